package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// History on topic-manager nodes, across processes: the manager keeps the
// streams, so a manager killed and restarted, or a failover to another
// manager, gives new epochs, and a client that comes back is told
// recovered: false; within an epoch, recovery works through the binary.

func TestClusterHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns manager and gateway processes")
	}
	bin := filepath.Join(t.TempDir(), "firetower")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Run("ManagerKilledNewEpoch", func(t *testing.T) {
		m := startManager(t, bin, "manager", "127.0.0.1:0", "127.0.0.1:0")
		g1 := startHistGateway(t, bin, 1, m.addr)
		g2 := startHistGateway(t, bin, 2, m.addr)
		before := histRecoverWithin(t, g1, g2)
		m.kill()
		startManager(t, bin, "manager (restarted)", m.addr, m.http)
		histAfterLoss(t, g1, g2, before)
	})
	t.Run("FailoverTwoManagers", func(t *testing.T) {
		m1 := startManager(t, bin, "manager 1", "127.0.0.1:0", "127.0.0.1:0")
		m2 := startManager(t, bin, "manager 2", "127.0.0.1:0", "127.0.0.1:0")
		g1 := startHistGateway(t, bin, 1, m1.addr, m2.addr)
		g2 := startHistGateway(t, bin, 2, m1.addr, m2.addr)
		before := histRecoverWithin(t, g1, g2)
		m1.kill()
		histAfterLoss(t, g1, g2, before)
	})
}

func startHistGateway(t *testing.T, bin string, node int, managers ...string) *gatewayProc {
	t.Helper()
	name := fmt.Sprintf("gateway %d", node)
	p := startProc(t, bin, name, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--manager", strings.Join(managers, ","), "--node-id", strconv.Itoa(node),
		"--history-size", "1000", "--history-ttl", "1h")
	g := &gatewayProc{proc: p}
	g.ws, _ = p.out.wait(t, name, wsLineRE)
	g.http, _ = p.out.wait(t, name, httpLineRE)
	return g
}

const histTopic = "room/h"

type histPosition struct {
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Recovered bool   `json:"recovered"`
}

// histPublishHTTP publishes on g and returns the position the API answers.
func histPublishHTTP(g *gatewayProc, data string) (histPosition, error) {
	body := fmt.Sprintf(`{"topic":%q,"data":%q}`, histTopic, data)
	resp, err := httpc.Post("http://"+g.http+"/api/v1/publish", "application/json", strings.NewReader(body))
	if err != nil {
		return histPosition{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return histPosition{}, fmt.Errorf("publish: %s %s", resp.Status, b)
	}
	var p histPosition
	if err := json.Unmarshal(b, &p); err != nil || p.Epoch == "" || p.Offset == 0 {
		return p, fmt.Errorf("publish answer %s: no position (%v)", b, err)
	}
	return p, nil
}

type histWS struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialHistWS(t *testing.T, g *gatewayProc) *histWS {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+g.ws+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return &histWS{t: t, ws: ws}
}

type histFrame struct {
	Type      string                  `json:"type"`
	Topic     string                  `json:"topic"`
	Data      json.RawMessage         `json:"data"`
	Offset    uint64                  `json:"offset"`
	Positions map[string]histPosition `json:"positions"`
}

func (c *histWS) next() histFrame {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(clusterWait))
	_, p, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatal(err)
	}
	var f histFrame
	if err := json.Unmarshal(p, &f); err != nil {
		c.t.Fatalf("%q: %v", p, err)
	}
	return f
}

// subscribe subscribes to histTopic, from since when given, and returns
// the ack's position.
func (c *histWS) subscribe(since *histPosition) histPosition {
	c.t.Helper()
	req := map[string]any{"type": "subscribe", "topic": histTopic, "id": 1}
	if since != nil {
		req["since"] = map[string]any{histTopic: map[string]any{"epoch": since.Epoch, "offset": since.Offset}}
	}
	b, _ := json.Marshal(req)
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatal(err)
	}
	f := c.next()
	p, ok := f.Positions[histTopic]
	if f.Type != "ack" || !ok {
		c.t.Fatalf("got %+v, want an ack with a position", f)
	}
	return p
}

func (c *histWS) delivery() (uint64, string) {
	c.t.Helper()
	f := c.next()
	if f.Type != "publish" || f.Topic != histTopic || f.Offset == 0 {
		c.t.Fatalf("got %+v, want a delivery with an offset", f)
	}
	var s string
	_ = json.Unmarshal(f.Data, &s)
	return f.Offset, s
}

// histRecoverWithin: a client of g1 reconnects after 5 publishes on g2 and
// recovers them; it returns the latest position.
func histRecoverWithin(t *testing.T, g1, g2 *gatewayProc) histPosition {
	t.Helper()
	c := dialHistWS(t, g1)
	pos := c.subscribe(nil)
	first, err := histPublishHTTP(g2, "a0")
	if err != nil {
		t.Fatal(err)
	}
	if first.Epoch != pos.Epoch || first.Offset != pos.Offset+1 {
		t.Fatalf("publish at %+v after the ack's %+v", first, pos)
	}
	if o, d := c.delivery(); o != first.Offset || d != "a0" {
		t.Fatalf("delivery %d %q", o, d)
	}
	_ = c.ws.Close()
	var last histPosition
	for i := 1; i <= 5; i++ {
		if last, err = histPublishHTTP(g2, "a"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	c = dialHistWS(t, g1)
	got := c.subscribe(&first)
	if !got.Recovered || got.Epoch != first.Epoch || got.Offset != last.Offset {
		t.Fatalf("recovery %+v, want recovered up to %+v", got, last)
	}
	for i := 1; i <= 5; i++ {
		if o, d := c.delivery(); o != first.Offset+uint64(i) || d != "a"+strconv.Itoa(i) {
			t.Fatalf("replay %d: %d %q", i, o, d)
		}
	}
	return last
}

// histAfterLoss: the manager that kept the streams is gone; once a publish
// goes through again, its epoch is another one, a client coming back with
// the old position is told recovered: false, and recovery works in the new
// epoch.
func histAfterLoss(t *testing.T, g1, g2 *gatewayProc, before histPosition) {
	t.Helper()
	// Both gateways are back: a publish on another topic goes through g1.
	poll(t, "gateway 1 to publish again after the manager was lost", func() (bool, error) {
		err := publish(g1, "probe", `"p"`)
		return err == nil, err
	})
	var p histPosition
	poll(t, "a publish to go through after the manager was lost", func() (bool, error) {
		var err error
		p, err = histPublishHTTP(g2, "b0")
		return err == nil, err
	})
	if p.Epoch == before.Epoch {
		t.Fatalf("the stream kept its epoch %q after its manager was lost", p.Epoch)
	}
	c := dialHistWS(t, g1)
	got := c.subscribe(&before)
	if got.Recovered || got.Epoch != p.Epoch {
		t.Fatalf("since the lost epoch: %+v, want not recovered in epoch %q", got, p.Epoch)
	}
	_ = c.ws.Close()
	var last histPosition
	for i := 1; i <= 3; i++ {
		var err error
		if last, err = histPublishHTTP(g2, "b"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	c = dialHistWS(t, g1)
	got = c.subscribe(&histPosition{Epoch: p.Epoch, Offset: p.Offset})
	if !got.Recovered || got.Offset != last.Offset {
		t.Fatalf("recovery in the new epoch: %+v, want up to %+v", got, last)
	}
	for i := 1; i <= 3; i++ {
		if o, d := c.delivery(); o != p.Offset+uint64(i) || d != "b"+strconv.Itoa(i) {
			t.Fatalf("replay %d in the new epoch: %d %q", i, o, d)
		}
	}
}
