package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two runs of the compression scenario, trimmed to the units the issue 13
// rows read.
var compressionRuns = []string{
	`BenchmarkCompression/subs=1000/firetower-2     20  1 ns/op  1000000 deliveries/s  700 cpu-ns/delivery  336.7 wire-B/delivery
BenchmarkCompression/subs=1000/firetower-plain-2  20  1 ns/op  1100000 deliveries/s  700 cpu-ns/delivery  1067 wire-B/delivery
BenchmarkCompression/subs=1000/centrifuge-2      20  1 ns/op   400000 deliveries/s  2800 cpu-ns/delivery  149 wire-B/delivery
BenchmarkCompression/subs=1000/floor-2           20  1 ns/op  1000000 deliveries/s  650 cpu-ns/delivery  336.8 wire-B/delivery
`,
	`BenchmarkCompression/subs=1000/firetower-2     20  1 ns/op  1200000 deliveries/s  800 cpu-ns/delivery  336.7 wire-B/delivery
BenchmarkCompression/subs=1000/firetower-plain-2  20  1 ns/op  1100000 deliveries/s  400 cpu-ns/delivery  1067 wire-B/delivery
BenchmarkCompression/subs=1000/centrifuge-2      20  1 ns/op   200000 deliveries/s  2800 cpu-ns/delivery  149 wire-B/delivery
BenchmarkCompression/subs=1000/floor-2           20  1 ns/op  1500000 deliveries/s  650 cpu-ns/delivery  336.8 wire-B/delivery
`,
}

func parseRuns(t *testing.T, runs []string) *parsed {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for i, r := range runs {
		f := filepath.Join(dir, "run-"+string(rune('1'+i))+".txt")
		if err := os.WriteFile(f, []byte(r), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	p, err := parse(files)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// findRow returns the one row whose target or ratio label is label.
func findRow(t *testing.T, rows []string, label string) string {
	t.Helper()
	var found []string
	for _, r := range rows {
		if strings.Contains(r, "| "+label+" |") {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("rows labelled %q: %d, want 1, in\n%s", label, len(found), strings.Join(rows, "\n"))
	}
	return found[0]
}

// TestIssue13Rows: the compression targets take each ratio within a run
// (firetower-plain is parsed although it has no column), and the verdict
// follows the median.
func TestIssue13Rows(t *testing.T) {
	p := parseRuns(t, compressionRuns)
	rows := p.ratioRows(targets13, true)
	// Per run: 1.0M/400k = 2.5, 1.2M/200k = 6.0; median 4.25: missed.
	if r := findRow(t, rows, "deliveries/s: firetower / centrifuge ≥ 5×"); !strings.Contains(r, "4.25× (2.50 – 6.00)") || !strings.Contains(r, "**missed**") {
		t.Errorf("deliveries row: %s", r)
	}
	// Per run: 700/700 = 1.0, 800/400 = 2.0; median 1.5: met (at most 1.5).
	if r := findRow(t, rows, "server CPU per delivery: with compression / without ≤ 1.5×"); !strings.Contains(r, "1.50× (1.00 – 2.00)") || !strings.HasSuffix(r, " met |") {
		t.Errorf("CPU row: %s", r)
	}
	extra := p.ratioRows(extras13, false)
	if r := findRow(t, extra, "server CPU per delivery: centrifuge / firetower"); !strings.Contains(r, "3.75× (3.50 – 4.00)") {
		t.Errorf("inverse CPU row: %s", r)
	}
	if r := findRow(t, extra, "bytes on the wire: with compression / without"); !strings.Contains(r, "0.32×") {
		t.Errorf("wire row: %s", r)
	}
	floor := p.ratioRowsOf("floor", extrasFloor13, false)
	// Per run: 1.0M/400k = 2.5, 1.5M/200k = 7.5; median 5.0.
	if r := findRow(t, floor, "deliveries/s: floor / centrifuge"); !strings.Contains(r, "5.00× (2.50 – 7.50)") {
		t.Errorf("floor row: %s", r)
	}
}

// TestParseIgnoresUnknownServers: a server name the report does not know
// is left out rather than mistaken for one it does.
func TestParseIgnoresUnknownServers(t *testing.T) {
	p := parseRuns(t, []string{"BenchmarkCompression/subs=1000/nbio-2  20  1 ns/op  5 deliveries/s\n" + compressionRuns[0]})
	if _, ok := p.res["BenchmarkCompression/subs=1000"]["nbio"]; ok {
		t.Fatal("an unknown server was parsed")
	}
	if got := p.res["BenchmarkCompression/subs=1000"][plainServer]["deliveries/s"][0]; got != 1100000 {
		t.Fatalf("firetower-plain deliveries/s = %v, want 1100000", got)
	}
}
