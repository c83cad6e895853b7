//go:build linux

package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Child processes are this test binary re-executed with FTBENCH_ROLE set;
// TestMain sends them to runChild before any test or benchmark runs.

// maxConnsPerChild keeps each load-generator process well under its file
// descriptor limit (ulimit -n 20000).
const maxConnsPerChild = 10000

// runChild runs the role named by FTBENCH_ROLE; ok is false when there is
// none (the process is the benchmark itself).
func runChild() (code int, ok bool) {
	role := os.Getenv("FTBENCH_ROLE")
	if role == "" {
		return 0, false
	}
	// FTBENCH_CPUPROFILE=prefix (diagnostics): each child writes the CPU
	// profile of its whole life to prefix.<role>.<pid>.
	if prefix := os.Getenv("FTBENCH_CPUPROFILE"); prefix != "" {
		if f, perr := os.Create(fmt.Sprintf("%s.%s.%d", prefix, role, os.Getpid())); perr == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
			}
		}
	}
	var err error
	switch role {
	case "clients":
		err = runLoadGen(os.Stdin, os.Stdout)
	case "publishers":
		err = runPublishers(os.Stdin, os.Stdout)
	case "tlsclients":
		err = runTLSLoadGen(os.Stdin, os.Stdout)
	case "server":
		err = runServerChild(os.Stdin, os.Stdout)
	case "storm": // storm.go
		err = runStorm(os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown FTBENCH_ROLE %q", os.Getenv("FTBENCH_ROLE"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		return 1, true
	}
	return 0, true
}

// runServerChild runs one server (FTBENCH_SERVER) until stdin says quit.
func runServerChild(stdin io.Reader, stdout io.Writer) error {
	if os.Getenv("FTBENCH_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	s, err := newServer(os.Getenv("FTBENCH_SERVER"))
	if err != nil {
		fmt.Fprintf(stdout, "fail %s\n", oneLine(err.Error()))
		return err
	}
	fmt.Fprintf(stdout, "addr %s %s %s\n", s.Addr(), s.Path(), s.Flavour())
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		if cmd == "quit" {
			break
		}
		if cmd == "gc" { // before a memory reading: collect, return free memory to the OS
			debug.FreeOSMemory()
			if path := os.Getenv("FTBENCH_HEAPPROFILE"); path != "" {
				if f, err := os.Create(path + ".open"); err == nil {
					_ = pprof.WriteHeapProfile(f)
					_ = f.Close()
				}
			}
			fmt.Fprintln(stdout, "ok")
		}
	}
	if path := os.Getenv("FTBENCH_HEAPPROFILE"); path != "" { // diagnostics
		if f, err := os.Create(path); err == nil {
			runtime.GC()
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
	}
	return s.Close()
}

// proc is a child process that speaks lines on stdin and stdout.
type proc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startProc(role string, env ...string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "FTBENCH_ROLE="+role), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p, nil
}

func (p *proc) send(line string) error {
	_, err := io.WriteString(p.in, line+"\n")
	return err
}

// recv returns the child's next line.
func (p *proc) recv(timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", errors.New("child process exited")
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("no answer from the child process in %v", timeout)
	}
}

// stop asks the child to quit and waits for it (killing it after a while).
func (p *proc) stop() {
	_ = p.send("quit")
	_ = p.in.Close()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
drain:
	for {
		select {
		case _, ok := <-p.lines:
			if !ok {
				break drain
			}
		case <-t.C:
			_ = p.cmd.Process.Kill()
			for range p.lines {
			}
			break drain
		}
	}
	_ = p.cmd.Wait()
}

// clients is the load generator: one or more child processes holding the
// subscriber connections of one server.
type clients struct {
	procs []*proc
	conns int
}

// startClients connects conns subscribers to the server at addr (connection
// i subscribes to topic i % topics) and returns once all are subscribed.
func startClients(addr, path, flavour string, conns, topics int) (*clients, error) {
	if flavour == flavourTLS {
		return startLoad("tlsclients", addr, path, flavour, conns, topics)
	}
	return startLoad("clients", addr, path, flavour, conns, topics)
}

// startLoad starts the load generator of role ("clients" or "publishers")
// for conns connections over topics topics, in as many child processes as
// the descriptor limit needs (connection i of a process is connection
// from+i of the whole), and returns once all are subscribed.
func startLoad(role, addr, path, flavour string, conns, topics int, env ...string) (*clients, error) {
	c := &clients{conns: conns}
	for from := 0; from < conns; from += maxConnsPerChild {
		n := min(maxConnsPerChild, conns-from)
		p, err := startProc(role, append([]string{
			"FTBENCH_ADDR=" + addr, "FTBENCH_PATH=" + path, "FTBENCH_FLAVOUR=" + flavour,
			"FTBENCH_FROM=" + strconv.Itoa(from), "FTBENCH_CONNS=" + strconv.Itoa(n),
			"FTBENCH_TOTAL=" + strconv.Itoa(conns), "FTBENCH_TOPICS=" + strconv.Itoa(topics)}, env...)...)
		if err != nil {
			c.close()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	timeout := 60*time.Second + time.Duration(conns)*10*time.Millisecond
	for _, p := range c.procs {
		l, err := p.recv(timeout)
		if err == nil && !strings.HasPrefix(l, "ready ") {
			err = errors.New(l)
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("load generator: %w", err)
		}
	}
	return c, nil
}

func (c *clients) all(cmd string, timeout time.Duration) ([]string, error) {
	for _, p := range c.procs {
		if err := p.send(cmd); err != nil {
			return nil, err
		}
	}
	var out []string
	var errs []error
	for _, p := range c.procs {
		l, err := p.recv(timeout)
		if err == nil && strings.HasPrefix(l, "fail") {
			err = errors.New(strings.TrimPrefix(l, "fail "))
		}
		errs = append(errs, err)
		out = append(out, l)
	}
	return out, errors.Join(errs...)
}

// stallTimeout is how long a load generator waits without any delivery
// before it declares the missing ones lost.
const stallTimeout = 30 * time.Second

// expect waits until every connection has received perConn deliveries in
// all, intact and in order.
func (c *clients) expect(perConn int64) error {
	_, err := c.all(fmt.Sprintf("expect %d %d", perConn, int(stallTimeout/time.Second)), 10*time.Minute)
	return err
}

// recordLatency turns the recording of publish->receive latencies on or off.
func (c *clients) recordLatency(on bool) error {
	cmd := "latrec 0"
	if on {
		cmd = "latrec 1"
	}
	_, err := c.all(cmd, time.Minute)
	return err
}

// latency returns the latencies recorded since the last call. With several
// child processes the larger p50 and p99 are taken (conservative).
func (c *clients) latency() (n int, p50, p99, mx int64, err error) {
	lines, err := c.all("lat", time.Minute)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for _, l := range lines {
		var k int
		var a, b, m int64
		if _, err := fmt.Sscanf(l, "lat %d %d %d %d", &k, &a, &b, &m); err != nil {
			return 0, 0, 0, 0, fmt.Errorf("bad latency line %q: %w", l, err)
		}
		n += k
		p50, p99, mx = max(p50, a), max(p99, b), max(mx, m)
	}
	return n, p50, p99, mx, nil
}

func (c *clients) close() {
	for _, p := range c.procs {
		p.stop()
	}
	c.procs = nil
}

// serverProc is a server running in its own child process (for memory).
type serverProc struct {
	p                   *proc
	addr, path, flavour string
}

func startServerProc(kind string) (*serverProc, error) {
	p, err := startProc("server", "FTBENCH_SERVER="+kind)
	if err != nil {
		return nil, err
	}
	l, err := p.recv(time.Minute)
	if err == nil && !strings.HasPrefix(l, "addr ") {
		err = errors.New(l)
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("server child: %w", err)
	}
	f := strings.Fields(l)
	if len(f) != 4 {
		p.stop()
		return nil, fmt.Errorf("server child: bad line %q", l)
	}
	return &serverProc{p: p, addr: f[1], path: f[2], flavour: f[3]}, nil
}

// rss is the server process's resident set size in bytes.
func (s *serverProc) rss() (int64, error) {
	return vmRSS(s.p.cmd.Process.Pid)
}

func (s *serverProc) stop() { s.p.stop() }

// vmRSS reads VmRSS of process pid from /proc, in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/pid/status")
}

// procCPU is the CPU time (user+system) process pid has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc/pid/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("bad /proc/pid/stat")
	}
	// fields after the command: state(0) ... utime(11) stime(12), in ticks
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// cpu is the CPU time the load generator processes have used so far.
func (c *clients) cpu() time.Duration {
	var d time.Duration
	for _, p := range c.procs {
		if t, err := procCPU(p.cmd.Process.Pid); err == nil {
			d += t
		}
	}
	return d
}

// selfCPU is the CPU time (user+system) this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
