// Command benchreport turns the output of several runs of the bench suite
// into README.md's results section: a table of every scenario and server
// (median and min-max over the runs) and the ratios against issue 3's
// targets (each ratio taken within one run, then the median over runs),
// and, when the runs include BenchmarkCluster, a table of its deployments
// (one node, two gateways on a manager node, two gateways on NATS) with
// their ratios to the single node, and, when they include the scenarios
// where clients publish (BenchmarkIngest, BenchmarkChat), a table of those
// with issue 10's targets (losses and error frames judged on the worst
// run, not the median). BenchmarkChat's firetower-delay (firetower with
// WithWriteDelay) and centrifuge-delay (centrifuge with its WriteDelay) get
// columns of that table, and firetower-delay ratios with no target.
//
//	go run ./cmd/benchreport -readme README.md [-benchstat file] [-command text] run-1.txt run-2.txt ...
//
// It replaces what lies between the lines "<!-- BEGIN RESULTS -->" and
// "<!-- END RESULTS -->" in the README.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

var servers = []string{"firetower", "gorilla", "centrifuge", "floor"}

// delayServer is firetower with a write delay (WithWriteDelay), which only
// BenchmarkChat runs: a column of the client-publish table, when the runs
// have it, and ratios of its own with no target.
const delayServer = "firetower-delay"

// delayCentrifuge is centrifuge with its own WriteDelay (the same delay),
// beside delayServer in BenchmarkChat.
const delayCentrifuge = "centrifuge-delay"

// pubServers are the client-publish table's columns when the runs include
// delayServer.
var pubServers = []string{"firetower", delayServer, "gorilla", "centrifuge", delayCentrifuge, "floor"}

// clusterKinds are BenchmarkCluster's deployments (its last name element,
// where the other benchmarks have a server).
var clusterKinds = []string{"single", "manager", "nats"}

// results[scenario][server][unit][run] = value
type results map[string]map[string]map[string]map[int]float64

type parsed struct {
	res       results
	scenarios []string // in order of appearance
	runs      int
}

var procSuffix = regexp.MustCompile(`-\d+$`)

func parse(files []string) (*parsed, error) {
	p := &parsed{res: results{}, runs: len(files)}
	for run, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
				continue
			}
			name := procSuffix.ReplaceAllString(fields[0], "")
			i := strings.LastIndexByte(name, '/')
			if i < 0 || !slices.Contains(pubServers, name[i+1:]) && !slices.Contains(clusterKinds, name[i+1:]) && name[i+1:] != plainServer {
				continue
			}
			scen, srv := name[:i], name[i+1:]
			if _, ok := p.res[scen]; !ok {
				p.res[scen] = map[string]map[string]map[int]float64{}
				p.scenarios = append(p.scenarios, scen)
			}
			if p.res[scen][srv] == nil {
				p.res[scen][srv] = map[string]map[int]float64{}
			}
			for j := 2; j+1 < len(fields); j += 2 {
				v, err := strconv.ParseFloat(fields[j], 64)
				if err != nil {
					continue
				}
				u := fields[j+1]
				if p.res[scen][srv][u] == nil {
					p.res[scen][srv][u] = map[int]float64{}
				}
				p.res[scen][srv][u][run] = v
			}
		}
	}
	if len(p.scenarios) == 0 {
		return nil, errors.New("no benchmark results in the input")
	}
	return p, nil
}

type stat struct {
	med, lo, hi float64
	n           int
}

func summarize(vals []float64) stat {
	if len(vals) == 0 {
		return stat{}
	}
	s := slices.Clone(vals)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{med: m, lo: s[0], hi: s[len(s)-1], n: len(s)}
}

func values(m map[int]float64) []float64 {
	var out []float64
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// units shown in the results tables, in order.
var tableUnits = []string{"publishes/s", "deliveries/s", "expected-deliveries/s", "cpu-ns/publish", "cpu-ns/delivery",
	"writes/delivery", "p50-ns", "p99-ns", "bytes/conn", "bytes/sub", "allocs/delivery", "B/delivery", "wire-B/delivery", "lost", "error-frames", "closed-conns"}

func format(unit string, v float64) string {
	switch unit {
	case "deliveries/s", "publishes/s", "expected-deliveries/s":
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2fM", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.0fk", v/1e3)
		}
		return fmt.Sprintf("%.0f", v)
	case "p50-ns", "p99-ns":
		return fmt.Sprintf("%.1f ms", v/1e6)
	case "cpu-ns/delivery", "cpu-ns/publish":
		if v >= 1000 {
			return fmt.Sprintf("%.1f µs", v/1000)
		}
		return fmt.Sprintf("%.0f ns", v)
	case "bytes/conn", "bytes/sub", "B/delivery":
		return fmt.Sprintf("%.0f B", v)
	case "wire-B/delivery":
		return fmt.Sprintf("%.1f B", v)
	case "allocs/delivery":
		return fmt.Sprintf("%.4f", v)
	case "writes/delivery":
		return fmt.Sprintf("%.3f", v)
	case "lost", "error-frames", "closed-conns":
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", v)
}

func cell(unit string, s stat) string {
	if s.n == 0 {
		return "—"
	}
	if s.n == 1 {
		return format(unit, s.med)
	}
	return fmt.Sprintf("%s (%s – %s)", format(unit, s.med), format(unit, s.lo), format(unit, s.hi))
}

func scenarioTitle(scen string) string {
	t := strings.TrimPrefix(scen, "Benchmark")
	t = strings.ReplaceAll(t, "/", ", ")
	return t
}

// target is one of issue 3's or issue 10's targets: ratio =
// firetower/other (or other/firetower when inverse), compared with bound.
type target struct {
	prefix  string // scenario prefix, or a regular expression if it starts with ^
	unit    string
	other   string // "" for an absolute bound on firetower's value
	inverse bool   // ratio is other/firetower
	atMost  bool   // ratio (or value) must be <= bound, else >=
	bound   float64
	label   string
}

// worstRun reports whether the verdict takes the worst run rather than the
// median: a loss or an error frame in any run misses a target of none.
func (t target) worstRun() bool { return t.unit == "lost" || t.unit == "error-frames" }

func (t target) matches(scen string) bool {
	if strings.HasPrefix(t.prefix, "^") {
		return regexp.MustCompile(t.prefix).MatchString(scen)
	}
	return strings.HasPrefix(scen, t.prefix)
}

var targets = []target{
	{"BenchmarkBurst/", "deliveries/s", "gorilla", false, false, 10, "firetower / gorilla hub ≥ 10×"},
	{"BenchmarkBurst/", "deliveries/s", "centrifuge", false, false, 3, "firetower / centrifuge ≥ 3×"},
	{"BenchmarkBurst/", "deliveries/s", "floor", false, false, 0.7, "firetower / floor ≥ 0.7×"},
	{"BenchmarkBroadcast/", "deliveries/s", "gorilla", false, false, 1.0, "firetower / gorilla hub ≥ 1.0×"},
	{"BenchmarkBroadcast/", "deliveries/s", "floor", false, false, 0.8, "firetower / floor ≥ 0.8×"},
	{"BenchmarkLatency/", "p99-ns", "gorilla", false, true, 1.0, "p99: firetower / gorilla hub ≤ 1.0×"},
	{"BenchmarkIdleMemory/conns=", "bytes/conn", "", false, true, 2048, "firetower ≤ 2 KiB per connection"},
	{"BenchmarkIdleMemory/conns=", "bytes/conn", "gorilla", true, false, 10, "gorilla hub / firetower ≥ 10×"},
	{"BenchmarkIdleMemory/subscriptions=", "bytes/sub", "", false, true, 256, "firetower ≤ 256 B per subscription (issue 11)"},
	{"BenchmarkAllocs/", "allocs/delivery", "", false, true, 0.0005, "firetower 0 allocs/delivery (< 0.0005)"},
}

// ingest64x1 is the careful client of issue 10's targets: one connection,
// window 64.
const ingest64x1 = "^BenchmarkIngest/window=64/conns=1/"

// targets10 are issue 10's targets (client publishes).
var targets10 = []target{
	{prefix: ingest64x1, unit: "publishes/s", other: "gorilla", bound: 3, label: "publishes/s: firetower / gorilla hub ≥ 3×"},
	{prefix: ingest64x1, unit: "publishes/s", other: "floor", bound: 0.5, label: "publishes/s: firetower / floor ≥ 0.5×"},
	{prefix: ingest64x1, unit: "cpu-ns/publish", atMost: true, bound: 3000, label: "firetower server CPU per publish ≤ 3 µs"},
	{prefix: "^BenchmarkIngest/window=unbounded/", unit: "lost", atMost: true, bound: 0, label: "firetower lost = 0 (every run)"},
	{prefix: "^BenchmarkIngest/window=unbounded/", unit: "error-frames", atMost: true, bound: 0, label: "firetower error frames = 0 (every run)"},
	{prefix: "^BenchmarkChat/", unit: "lost", atMost: true, bound: 0, label: "firetower lost = 0 (every run)"},
	{prefix: "^BenchmarkChat/", unit: "cpu-ns/delivery", other: "gorilla", atMost: true, bound: 0.5, label: "server CPU per delivery: firetower / gorilla hub ≤ 0.5×"},
	{prefix: "^BenchmarkChat/", unit: "cpu-ns/delivery", other: "centrifuge", atMost: true, bound: 0.5, label: "server CPU per delivery: firetower / centrifuge ≤ 0.5×"},
	{prefix: "^BenchmarkChat/", unit: "p99-ns", other: "gorilla", atMost: true, bound: 1, label: "p99: firetower / gorilla hub ≤ 1.0×"},
}

// extras10 are informational ratios of the client-publish scenarios.
var extras10 = []target{
	{prefix: "^BenchmarkIngest/window=64/", unit: "publishes/s", other: "gorilla", bound: math.NaN(), label: "publishes/s: firetower / gorilla hub"},
	{prefix: "^BenchmarkIngest/window=64/", unit: "publishes/s", other: "centrifuge", bound: math.NaN(), label: "publishes/s: firetower / centrifuge"},
	{prefix: "^BenchmarkIngest/window=64/", unit: "publishes/s", other: "floor", bound: math.NaN(), label: "publishes/s: firetower / floor"},
	{prefix: "^BenchmarkIngest/", unit: "cpu-ns/publish", other: "gorilla", inverse: true, bound: math.NaN(), label: "server CPU per publish: gorilla hub / firetower"},
	{prefix: "^BenchmarkIngest/", unit: "cpu-ns/publish", other: "floor", inverse: true, bound: math.NaN(), label: "server CPU per publish: floor / firetower"},
	{prefix: "^BenchmarkChat/", unit: "cpu-ns/delivery", other: "floor", bound: math.NaN(), label: "server CPU per delivery: firetower / floor"},
	{prefix: "^BenchmarkChat/", unit: "p99-ns", other: "centrifuge", atMost: true, bound: math.NaN(), label: "p99: firetower / centrifuge"},
	{prefix: "^BenchmarkChat/", unit: "p99-ns", other: "floor", atMost: true, bound: math.NaN(), label: "p99: firetower / floor"},
}

// extrasDelay are delayServer's ratios (delayServer in place of firetower),
// with no target: the issue 10 targets stay about default firetower.
var extrasDelay = []target{
	{prefix: "^BenchmarkChat/", unit: "cpu-ns/delivery", other: "gorilla", atMost: true, bound: math.NaN(), label: "server CPU per delivery: firetower-delay / gorilla hub"},
	{prefix: "^BenchmarkChat/", unit: "p99-ns", other: "gorilla", atMost: true, bound: math.NaN(), label: "p99: firetower-delay / gorilla hub"},
	{prefix: "^BenchmarkChat/", unit: "cpu-ns/delivery", other: delayCentrifuge, atMost: true, bound: math.NaN(), label: "server CPU per delivery: firetower-delay / centrifuge-delay"},
	{prefix: "^BenchmarkChat/", unit: "p99-ns", other: delayCentrifuge, atMost: true, bound: math.NaN(), label: "p99: firetower-delay / centrifuge-delay"},
}

// extrasFloor10 are the floor's own ratios in Chat (the floor in
// firetower's place): what a server that does no protocol work and writes
// each delivery as it comes can reach against the others, the bound of any
// server that does not hold messages back.
var extrasFloor10 = []target{
	{prefix: "^BenchmarkChat/", unit: "cpu-ns/delivery", other: "gorilla", atMost: true, bound: math.NaN(), label: "server CPU per delivery: floor / gorilla hub"},
	{prefix: "^BenchmarkChat/", unit: "cpu-ns/delivery", other: "centrifuge", atMost: true, bound: math.NaN(), label: "server CPU per delivery: floor / centrifuge"},
}

// plainServer is firetower without compression in the compression
// scenario: the reference for its CPU and bytes.
const plainServer = "firetower-plain"

// compressionScen is the prefix of issue 13's scenario; compression, the
// same as a target prefix.
const (
	compressionScen = "BenchmarkCompression/"
	compression     = "^" + compressionScen
)

// targets13 are issue 13's targets (compression).
var targets13 = []target{
	{prefix: compression, unit: "deliveries/s", other: "centrifuge", bound: 5, label: "deliveries/s: firetower / centrifuge ≥ 5×"},
	{prefix: compression, unit: "cpu-ns/delivery", other: plainServer, atMost: true, bound: 1.5, label: "server CPU per delivery: with compression / without ≤ 1.5×"},
}

// extras13 are informational ratios of the compression scenario.
var extras13 = []target{
	{prefix: compression, unit: "deliveries/s", other: "floor", bound: math.NaN(), label: "deliveries/s: firetower / floor"},
	{prefix: compression, unit: "cpu-ns/delivery", other: "centrifuge", inverse: true, bound: math.NaN(), label: "server CPU per delivery: centrifuge / firetower"},
	{prefix: compression, unit: "wire-B/delivery", other: plainServer, atMost: true, bound: math.NaN(), label: "bytes on the wire: with compression / without"},
}

// extrasFloor13 are the floor's ratios in the compression scenario: what a
// server that only compresses each publish once and writes it reaches on
// this machine, with the load generator beside it.
var extrasFloor13 = []target{
	{prefix: compression, unit: "deliveries/s", other: "centrifuge", bound: math.NaN(), label: "deliveries/s: floor / centrifuge"},
}

// clientPublish reports the scenarios where clients publish (issue 10),
// which have tables of their own.
func clientPublish(scen string) bool {
	return strings.HasPrefix(scen, "BenchmarkIngest/") || strings.HasPrefix(scen, "BenchmarkChat/")
}

// informational ratios, no target in issue 3.
var extras = []target{
	{"BenchmarkBurst/", "cpu-ns/delivery", "gorilla", true, false, math.NaN(), "server CPU per delivery: gorilla hub / firetower"},
	{"BenchmarkBurst/", "cpu-ns/delivery", "floor", true, false, math.NaN(), "server CPU per delivery: floor / firetower"},
	{"BenchmarkBroadcast/", "cpu-ns/delivery", "gorilla", true, false, math.NaN(), "server CPU per delivery: gorilla hub / firetower"},
	{"BenchmarkBroadcast/", "cpu-ns/delivery", "floor", true, false, math.NaN(), "server CPU per delivery: floor / firetower"},
	{"BenchmarkBroadcast/", "deliveries/s", "centrifuge", false, false, math.NaN(), "firetower / centrifuge"},
	{"BenchmarkLatency/", "p50-ns", "gorilla", false, true, math.NaN(), "p50: firetower / gorilla hub"},
	{"BenchmarkLatency/", "p99-ns", "floor", false, true, math.NaN(), "p99: firetower / floor"},
	{"BenchmarkManyTopics/", "deliveries/s", "gorilla", false, false, math.NaN(), "firetower / gorilla hub"},
	{"BenchmarkManyTopics/", "deliveries/s", "centrifuge", false, false, math.NaN(), "firetower / centrifuge"},
	{"BenchmarkManyTopics/", "deliveries/s", "floor", false, false, math.NaN(), "firetower / floor"},
}

func (p *parsed) ratioRows(ts []target, withVerdict bool) []string {
	return p.ratioRowsOf("firetower", ts, withVerdict)
}

// ratioRowsOf is ratioRows with subject in firetower's place.
func (p *parsed) ratioRowsOf(subject string, ts []target, withVerdict bool) []string {
	var rows []string
	for _, t := range ts {
		for _, scen := range p.scenarios {
			if !t.matches(scen) {
				continue
			}
			ft := p.res[scen][subject][t.unit]
			var per []float64
			if t.other == "" {
				per = values(ft)
			} else {
				ot := p.res[scen][t.other][t.unit]
				for run, a := range ft {
					if b, ok := ot[run]; ok && a > 0 && b > 0 {
						if t.inverse {
							per = append(per, b/a)
						} else {
							per = append(per, a/b)
						}
					}
				}
			}
			s := summarize(per)
			var meas string
			switch {
			case s.n == 0:
				meas = "no data"
			case t.other == "":
				meas = cell(t.unit, s)
			case s.n == 1:
				meas = fmt.Sprintf("%.2f×", s.med)
			default:
				meas = fmt.Sprintf("%.2f× (%.2f – %.2f)", s.med, s.lo, s.hi)
			}
			row := fmt.Sprintf("| %s | %s | %s |", scenarioTitle(scen), t.label, meas)
			if withVerdict {
				verdict := "no data"
				if s.n > 0 {
					v := s.med
					if t.worstRun() {
						v = s.hi
						if !t.atMost {
							v = s.lo
						}
					}
					ok := v >= t.bound
					if t.atMost {
						ok = v <= t.bound
					}
					verdict = "**missed**"
					if ok {
						verdict = "met"
					}
				}
				row += " " + verdict + " |"
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// table is the results of every scenario keep accepts with a column in
// cols (servers or clusterKinds); a scenario without any is left out.
func (p *parsed) table(cols []string, keep func(scen string) bool) []string {
	rows := []string{
		"| scenario | metric | " + strings.Join(cols, " | ") + " |",
		"|---|---|" + strings.Repeat("---|", len(cols)),
	}
	for _, scen := range p.scenarios {
		if !keep(scen) {
			continue
		}
		for _, u := range tableUnits {
			has := false
			for _, s := range cols {
				if len(p.res[scen][s][u]) > 0 {
					has = true
				}
			}
			if !has {
				continue
			}
			row := "| " + scenarioTitle(scen) + " | " + u + " |"
			for _, s := range cols {
				row += " " + cell(u, summarize(values(p.res[scen][s][u]))) + " |"
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// has reports whether the runs have results for any of cols (servers or
// clusterKinds) in a scenario keep accepts.
func (p *parsed) has(cols []string, keep func(string) bool) bool {
	for _, scen := range p.scenarios {
		if !keep(scen) {
			continue
		}
		for _, k := range cols {
			if len(p.res[scen][k]) > 0 {
				return true
			}
		}
	}
	return false
}

// clusterRatios are the cross-node deployments against the single node,
// each ratio taken within one run.
func (p *parsed) clusterRatios() []string {
	type ratio struct{ unit, label string }
	ratios := []ratio{
		{"deliveries/s", "deliveries/s: %s / single"},
		{"cpu-ns/delivery", "CPU per delivery: %s / single"},
		{"p50-ns", "p50: %s / single"},
		{"p99-ns", "p99: %s / single"},
	}
	var rows []string
	for _, scen := range p.scenarios {
		for _, r := range ratios {
			base := p.res[scen]["single"][r.unit]
			if len(base) == 0 {
				continue
			}
			for _, k := range clusterKinds[1:] {
				var per []float64
				for run, v := range p.res[scen][k][r.unit] {
					if b, ok := base[run]; ok && v > 0 && b > 0 {
						per = append(per, v/b)
					}
				}
				s := summarize(per)
				meas := "no data"
				switch {
				case s.n == 1:
					meas = fmt.Sprintf("%.2f×", s.med)
				case s.n > 1:
					meas = fmt.Sprintf("%.2f× (%.2f – %.2f)", s.med, s.lo, s.hi)
				}
				rows = append(rows, fmt.Sprintf("| %s | %s | %s |", scenarioTitle(scen), fmt.Sprintf(r.label, k), meas))
			}
		}
	}
	return rows
}

func machine() []string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	goVersion := runtime.Version()
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	nofile := ""
	if out, err := exec.Command("sh", "-c", "ulimit -n").Output(); err == nil {
		nofile = ", ulimit -n " + strings.TrimSpace(string(out))
	}
	return []string{
		fmt.Sprintf("- CPU: %d × %s (nproc %d)%s", runtime.NumCPU(), model, runtime.NumCPU(), mem),
		fmt.Sprintf("- kernel: Linux %s%s", kernel, nofile),
		fmt.Sprintf("- Go: %s", goVersion),
	}
}

func main() {
	readme := flag.String("readme", "README.md", "README to update")
	bstat := flag.String("benchstat", "", "benchstat output to include")
	command := flag.String("command", "", "the command that produced the runs")
	note := flag.String("note", "", "a line about the conditions of the run")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: benchreport [-readme README.md] [-benchstat file] run-1.txt ...")
		os.Exit(2)
	}
	p, err := parse(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	var out []string
	out = append(out, fmt.Sprintf("Generated by `run.sh` from %d run(s) on %s.", p.runs, time.Now().UTC().Format("2006-01-02 15:04 MST")), "")
	out = append(out, "Machine:", "")
	out = append(out, machine()...)
	if *note != "" {
		out = append(out, "- "+*note)
	}
	if *command != "" {
		out = append(out, "", "Each run: `"+*command+"`")
	}
	if p.has(servers, func(s string) bool { return !clientPublish(s) }) {
		out = append(out, "", "### Results (median, min – max over the runs)", "")
		out = append(out, p.table(servers, func(s string) bool { return !clientPublish(s) })...)
		if rows := p.ratioRows(targets, true); len(rows) > 0 {
			out = append(out, "", "### Targets of issue 3 (ratio within each run; median, min – max over the runs)", "")
			out = append(out, "| scenario | target | measured | verdict |", "|---|---|---|---|")
			out = append(out, rows...)
		}
		if rows := p.ratioRows(extras, false); len(rows) > 0 {
			out = append(out, "", "### Other ratios (no target)", "")
			out = append(out, "| scenario | ratio | measured |", "|---|---|---|")
			out = append(out, rows...)
		}
	}
	if p.has(servers, clientPublish) || p.has([]string{delayServer}, clientPublish) {
		cols := servers
		withDelay := p.has([]string{delayServer}, clientPublish)
		if withDelay {
			cols = pubServers
		}
		out = append(out, "", "### Client publishes (issue 10; median, min – max over the runs)", "",
			"Clients publish through each server's protocol (see \"Client publishes\" above); lost, error-frames",
			"and closed-conns are per run. cpu-ns is the server's CPU time alone.", "")
		out = append(out, p.table(cols, clientPublish)...)
		out = append(out, "", "### Targets of issue 10 (ratio within each run; median, min – max over the runs)", "")
		out = append(out, "| scenario | target | measured | verdict |", "|---|---|---|---|")
		out = append(out, p.ratioRows(targets10, true)...)
		out = append(out, "", "### Other ratios of the client-publish scenarios (no target)", "")
		out = append(out, "| scenario | ratio | measured |", "|---|---|---|")
		out = append(out, p.ratioRows(extras10, false)...)
		if withDelay {
			out = append(out, p.ratioRowsOf(delayServer, extrasDelay, false)...)
		}
		out = append(out, p.ratioRowsOf("floor", extrasFloor10, false)...)
	}
	isCompression := func(s string) bool { return strings.HasPrefix(s, compressionScen) }
	if p.has([]string{"firetower"}, isCompression) {
		out = append(out, "", "### Targets of issue 13 (compression; ratio within each run; median, min – max over the runs)", "")
		out = append(out, "| scenario | target | measured | verdict |", "|---|---|---|---|")
		out = append(out, p.ratioRows(targets13, true)...)
		out = append(out, "", "| scenario | ratio (no target) | measured |", "|---|---|---|")
		out = append(out, p.ratioRows(extras13, false)...)
		out = append(out, p.ratioRowsOf("floor", extrasFloor13, false)...)
	}
	if p.has(clusterKinds, func(string) bool { return true }) {
		out = append(out, "", "### Cross-node (issue 4; median, min – max over the runs)", "",
			"`single` is one firetower node; `manager` and `nats` are two gateways in this process,",
			"subscribers on one and every publish on the other, through a topic-manager node or an",
			"embedded NATS server (cpu-ns/delivery: the whole cluster's CPU).", "")
		out = append(out, p.table(clusterKinds, func(string) bool { return true })...)
		out = append(out, "", "| scenario | ratio (within each run) | measured |", "|---|---|---|")
		out = append(out, p.clusterRatios()...)
	}
	if *bstat != "" {
		b, err := os.ReadFile(*bstat)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
		out = append(out, "", "<details><summary>benchstat over all runs</summary>", "", "```", strings.TrimRight(string(b), "\n"), "```", "", "</details>")
	}
	if err := replaceSection(*readme, strings.Join(out, "\n")); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

const (
	beginMark = "<!-- BEGIN RESULTS -->"
	endMark   = "<!-- END RESULTS -->"
)

func replaceSection(path, body string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, beginMark)
	j := strings.Index(s, endMark)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s ... %s section", path, beginMark, endMark)
	}
	s = s[:i+len(beginMark)] + "\n" + body + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
