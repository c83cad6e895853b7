package firetower_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
)

// idServer is a Tower whose OnConnect sets the id named by the query
// parameter "id" (when present) and refuses the connection with SetID's
// error; with "fail" it refuses it anyway, after the id is set.
func idServer(t *testing.T, generated chan<- string) *firetower.Tower {
	return ptServer(t, firetower.OnConnect(ptHook(func(c *firetower.Context) error {
		q := c.Conn().Request().URL.Query()
		if !q.Has("id") {
			if generated != nil {
				generated <- c.Conn().ID()
			}
			return nil
		}
		if err := c.Conn().SetID(q.Get("id")); err != nil {
			return err
		}
		if q.Has("fail") {
			return &firetower.Error{Code: firetower.CodeForbidden, Message: "refused after SetID"}
		}
		return nil
	})))
}

// idDial dials with query; on a refusal it returns the HTTP status and body.
func idDial(t *testing.T, tw *firetower.Tower, query string) (*ptConn, int, string) {
	t.Helper()
	c, resp, err := ptDialRaw(ptURL(tw, query))
	if err == nil {
		t.Cleanup(c.close)
		return c, http.StatusSwitchingProtocols, ""
	}
	if resp == nil {
		t.Fatalf("dial %q: %v", query, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return nil, resp.StatusCode, string(b)
}

// idWaitFree polls until no open connection has id.
func idWaitFree(t *testing.T, tw *firetower.Tower, id string) {
	t.Helper()
	deadline := time.Now().Add(ptTimeout)
	for tw.Conn(id) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("connection %q still open", id)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

// TestSetIDUnique: a connection id is unique on its node. A second
// connection that sets an id in use is refused (and Disconnect reaches the
// first), "" is refused, an id of the form the node generates is refused,
// and an id is free again once its connection is gone, or its connection
// was refused after setting it.
func TestSetIDUnique(t *testing.T) {
	generated := make(chan string, 1)
	tw := idServer(t, generated)

	a, st, _ := idDial(t, tw, "id=dup")
	if st != http.StatusSwitchingProtocols {
		t.Fatalf("first connection with id dup: status %d", st)
	}
	if _, st, body := idDial(t, tw, "id=dup"); st == http.StatusSwitchingProtocols || !strings.Contains(body, "id") {
		t.Fatalf("second connection with id dup: status %d %q, want a refusal naming the id", st, body)
	}
	if _, st, body := idDial(t, tw, "id="); st == http.StatusSwitchingProtocols || !strings.Contains(body, "empty") {
		t.Fatalf("empty id: status %d %q, want a refusal", st, body)
	}
	if got := tw.Stats().Connections; got != 1 {
		t.Fatalf("%d connections open, want 1", got)
	}

	// The id of a connection the node named itself cannot be taken either.
	_, st, _ = idDial(t, tw, "")
	if st != http.StatusSwitchingProtocols {
		t.Fatalf("connection without id: status %d", st)
	}
	gen := ptRecv(t, generated, "the generated id")
	if _, st, _ := idDial(t, tw, "id="+gen); st == http.StatusSwitchingProtocols {
		t.Fatalf("a connection took the generated id %q of another", gen)
	}

	// Disconnect reaches the one connection with the id.
	if err := tw.Disconnect(context.Background(), "dup", 4000, "bye"); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	select {
	case <-a.done:
	case <-time.After(ptTimeout):
		t.Fatal("the connection with id dup was not disconnected")
	}
	idWaitFree(t, tw, "dup")
	if _, st, _ := idDial(t, tw, "id=dup"); st != http.StatusSwitchingProtocols {
		t.Fatalf("id dup after its connection left: status %d, want it free", st)
	}

	// A connection refused after SetID gives its id back.
	if _, st, _ := idDial(t, tw, "id=once&fail"); st == http.StatusSwitchingProtocols {
		t.Fatal("the refusing hook did not refuse")
	}
	deadline := time.Now().Add(ptTimeout)
	for {
		_, st, _ := idDial(t, tw, "id=once")
		if st == http.StatusSwitchingProtocols {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("id once still taken after its connection was refused: status %d", st)
		}
		time.Sleep(time.Millisecond) // the refused connection's cleanup runs after the answer
	}
}

// TestSetIDConcurrent: of many connections that set one id at once, one
// gets it.
func TestSetIDConcurrent(t *testing.T) {
	tw := idServer(t, nil)
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range n {
		wg.Go(func() {
			c, _, err := ptDialRaw(ptURL(tw, "id=same"))
			if err == nil {
				t.Cleanup(c.close)
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d of %d connections got the id, want 1", ok, n)
	}
}

// TestSetIDErrors checks SetID's errors directly, in OnConnect.
func TestSetIDErrors(t *testing.T) {
	errs := make(chan [3]error, 1)
	tw := ptServer(t, firetower.OnConnect(ptHook(func(c *firetower.Context) error {
		var e [3]error
		e[0] = c.Conn().SetID("")
		e[1] = c.Conn().SetID("mine")
		e[2] = c.Conn().SetID("mine") // its own id again
		errs <- e
		return nil
	})))
	ptDial(t, tw, "")
	e := ptRecv(t, errs, "SetID results")
	if !errors.Is(e[0], firetower.ErrEmptyID) || e[1] != nil || e[2] != nil {
		t.Fatalf(`SetID("") = %v, SetID("mine") = %v, again = %v`, e[0], e[1], e[2])
	}
	if c := tw.Conn("mine"); c == nil || c.ID() != "mine" {
		t.Fatal(`no open connection "mine"`)
	}
	// A second connection's SetID("mine") fails with ErrIDInUse.
	got := make(chan error, 1)
	tw2 := ptServer(t, firetower.OnConnect(ptHook(func(c *firetower.Context) error {
		err := c.Conn().SetID("x")
		if c.Conn().Request().URL.Query().Has("second") {
			got <- err
		}
		return nil
	})))
	ptDial(t, tw2, "")
	ptDialQuery(t, tw2, "", "second")
	if err := ptRecv(t, got, "the second SetID"); !errors.Is(err, firetower.ErrIDInUse) {
		t.Fatalf("second SetID(x) = %v, want ErrIDInUse", err)
	}
}
