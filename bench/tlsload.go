//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The TLS load generator (FTBENCH_ROLE=tlsclients): the raw epoll load
// generator speaks no TLS, so for the servers that serve wss this one
// holds the subscribers with gorilla/websocket clients over crypto/tls, a
// reader goroutine each. It speaks the same line protocol on stdin/stdout
// (ready, expect, quit) and connects the same way (connection i subscribes
// to topic i % topics with firetower's JSON protocol and waits for the
// ack). It counts the deliveries of each connection and checks that each
// is a delivery on its topic; their order and payload are not checked
// (the raw load generator does that for the plain servers).

// flavourTLS marks a server that serves wss with firetower's JSON
// protocol: startClients uses this load generator for it.
const flavourTLS = "firetower-tls"

type tlsConn struct {
	ws    *websocket.Conn
	topic []byte
	count atomic.Int64
	bad   atomic.Int64
}

func runTLSLoadGen(stdin io.Reader, stdout io.Writer) error {
	cfg, err := loadConfigFromEnv()
	if err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	reply := func(format string, a ...any) {
		fmt.Fprintf(out, format+"\n", a...)
		_ = out.Flush()
	}
	conns, err := tlsConnectAll(cfg)
	var wg sync.WaitGroup
	defer func() {
		for _, c := range conns {
			_ = c.ws.Close()
		}
		wg.Wait()
	}()
	if err != nil {
		reply("fail %s", oneLine(err.Error()))
		return err
	}
	var total atomic.Int64
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, m, err := c.ws.ReadMessage()
				if err != nil {
					return
				}
				if !bytes.Contains(m, []byte(`"type":"publish"`)) || !bytes.Contains(m, c.topic) {
					c.bad.Add(1)
					continue
				}
				c.count.Add(1)
				total.Add(1)
			}
		}()
	}
	reply("ready %d", len(conns))
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "expect":
			per, _ := strconv.ParseInt(f[1], 10, 64)
			stall, _ := strconv.Atoi(f[2])
			if err := tlsExpect(conns, &total, per, time.Duration(stall)*time.Second); err != nil {
				reply("fail %s", oneLine(err.Error()))
			} else {
				reply("ok %d", total.Load())
			}
		case "quit":
			return nil
		default:
			reply("fail unknown command %q", f[0])
		}
	}
	return sc.Err()
}

// tlsConnectAll dials, upgrades and subscribes every connection, 32 at a
// time.
func tlsConnectAll(cfg loadConfig) ([]*tlsConn, error) {
	d := websocket.Dialer{
		HandshakeTimeout: 30 * time.Second,
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: true}, // the benchmark's own self-signed certificate
		ReadBufferSize:   1024, WriteBufferSize: 1024,
	}
	url := "wss://" + cfg.addr + cfg.path
	conns := make([]*tlsConn, cfg.conns)
	sem := make(chan struct{}, cfg.dialers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			topic := topicName((cfg.from + i) % cfg.topics)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ws, _, err := d.DialContext(ctx, url, nil)
			if err == nil {
				err = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","topic":`+strconv.Quote(topic)+`,"id":1}`))
			}
			if err == nil {
				_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
				var m []byte
				if _, m, err = ws.ReadMessage(); err == nil && !bytes.Contains(m, []byte(`"ack"`)) {
					err = fmt.Errorf("subscribe answered %q", m)
				}
				_ = ws.SetReadDeadline(time.Time{})
			}
			if err != nil {
				if ws != nil {
					_ = ws.Close()
				}
				mu.Lock()
				errs = append(errs, fmt.Errorf("connection %d: %w", cfg.from+i, err))
				mu.Unlock()
				return
			}
			conns[i] = &tlsConn{ws: ws, topic: []byte(strconv.Quote(topic))}
		}()
	}
	wg.Wait()
	var ok []*tlsConn
	for _, c := range conns {
		if c != nil {
			ok = append(ok, c)
		}
	}
	if len(errs) > 0 {
		return ok, fmt.Errorf("%d of %d connections failed, first: %w", len(errs), cfg.conns, errs[0])
	}
	return ok, nil
}

// tlsExpect waits until every connection has per deliveries, or no
// delivery came for stall.
func tlsExpect(conns []*tlsConn, total *atomic.Int64, per int64, stall time.Duration) error {
	last, lastAt := total.Load(), time.Now()
	for {
		done := true
		for _, c := range conns {
			if c.count.Load() < per {
				done = false
				break
			}
		}
		if done {
			var bad, over int64
			for _, c := range conns {
				bad += c.bad.Load()
				if c.count.Load() > per {
					over++
				}
			}
			if bad > 0 || over > 0 {
				return fmt.Errorf("%d frames that are not a delivery on the connection's topic, %d connections with too many deliveries", bad, over)
			}
			return nil
		}
		if n := total.Load(); n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > stall {
			return errors.New("deliveries stalled: some are lost")
		}
		time.Sleep(time.Millisecond) // polling a counter the readers advance
	}
}
