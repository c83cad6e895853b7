package firetower_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
)

// TestDescriptorExhaustion runs a Tower in a child process whose descriptor
// limit is 128 and floods it with TCP connections until it cannot accept
// any more. The Tower must live through it: a client connected before the
// flood is served throughout, the failures are logged, and once the flood
// ends new clients are accepted again. (gnet's own acceptor stops the whole
// engine on EMFILE, which is why the transport accepts by itself.)
func TestDescriptorExhaustion(t *testing.T) {
	if os.Getenv("FIRETOWER_FD_CHILD") == "1" {
		fdChild()
		return
	}
	if testing.Short() {
		t.Skip("starts a child process and floods it; skipped with -short")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorExhaustion$", "-test.v")
	cmd.Env = append(os.Environ(), "FIRETOWER_FD_CHILD=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var logs strings.Builder
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		buf := make([]byte, 4096)
		for {
			n, err := stderr.Read(buf)
			logMu.Lock()
			logs.Write(buf[:n])
			logMu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	logged := func(s string) bool {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Contains(logs.String(), s)
	}
	t.Cleanup(func() {
		stdin.Close() // the child shuts down when its stdin closes
		if err := cmd.Wait(); err != nil {
			logMu.Lock()
			t.Errorf("child: %v\n%s", err, logs.String())
			logMu.Unlock()
		}
		<-logDone
	})
	var addr string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatalf("the child printed no address")
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()

	// A client from before the flood: subscribed, it publishes and reads
	// its own delivery and ack.
	gc, gbr := abConnect(t, addr, "")
	inSubscribe(t, gc, gbr, "/fd")
	good := inRead(t, gc, gbr, "/fd")
	sent := 0
	roundTrip := func(what string) {
		t.Helper()
		if _, err := gc.Write(inPublishes("/fd", sent, 1, 10)); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sent++
		good.waitAll(t, what, int64(sent), true)
	}
	roundTrip("before the flood")

	// The flood: raw TCP connections until the child logs that it ran out
	// of descriptors (the kernel completes handshakes into the listen
	// backlog whether or not the process can accept them).
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := 0; i < 2000 && !logged("out of file descriptors"); i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // the backlog is full too
		}
		flood = append(flood, c)
	}
	if !waitFor(abTimeout, func() bool { return logged("out of file descriptors") }) {
		logMu.Lock()
		t.Fatalf("after %d connections the child never ran out of descriptors:\n%s", len(flood), logs.String())
		logMu.Unlock()
	}
	t.Logf("the child ran out of descriptors after %d flood connections", len(flood))
	roundTrip("during the flood")

	for _, c := range flood {
		c.Close()
	}
	flood = nil
	// New clients are accepted again (the accept loop retries with a
	// backoff of at most a second; the flood's descriptors go as the
	// server sees them close).
	var nc net.Conn
	if !waitFor(abTimeout, func() bool {
		c, err := abDial(addr)
		if err != nil {
			return false
		}
		if _, _, err := abUpgrade(c, abRequest(addr, "")); err != nil {
			c.Close()
			return false
		}
		nc = c
		return true
	}) {
		t.Fatalf("no new client accepted after the flood")
	}
	nc.Close()
	roundTrip("after the flood")
	if !logged("accepting connections again") {
		t.Errorf("the recovery was not logged")
	}
}

// fdChild is the child of TestDescriptorExhaustion: a Tower with a
// descriptor limit of 128, its address on stdout, its log on stderr, until
// stdin closes.
func fdChild() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "getrlimit:", err)
		os.Exit(1)
	}
	lim.Cur = 128
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		os.Exit(1)
	}
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := tw.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("addr %s\n", tw.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tw.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "shutdown:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
