package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/managertest"
)

// startJetStream starts an embedded NATS server with JetStream, its store
// in a temporary directory.
func startJetStream(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		NoLog:     true,
		NoSigs:    true,
		JetStream: true,
		StoreDir:  t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(timeout) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// TestHistoryConformance runs the history and recovery scenarios of the
// suite (managertest.RunHistory) on NATS JetStream.
func TestHistoryConformance(t *testing.T) {
	managertest.RunHistory(t, managertest.Cluster{
		Name: "nats-jetstream",
		Managers: func(t *testing.T, n int) []firetower.Manager {
			url := startJetStream(t).ClientURL()
			out := make([]firetower.Manager, n)
			for i := range out {
				out[i] = newManager(t, []string{url})
			}
			return out
		},
	})
}

// TestHistoryStreamRecreated: a history topic's stream deleted and made
// again has another epoch, and a client coming back with a position of the
// old one is told recovered: false.
func TestHistoryStreamRecreated(t *testing.T) {
	s := startJetStream(t)
	m := newManager(t, []string{s.ClientURL()})
	tw, err := firetower.New(
		firetower.WithAddr("127.0.0.1:0"),
		firetower.WithNodeID(1),
		firetower.WithManager(m),
		firetower.WithHistory(100, time.Hour),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, tw) })
	const topic = "recreated"
	old, err := tw.PublishOffset(context.Background(), topic, []byte(`"a"`))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), m.StreamName(topic)); err != nil {
		t.Fatal(err)
	}
	p, err := tw.PublishOffset(context.Background(), topic, []byte(`"b"`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Epoch == old.Epoch || p.Offset != 1 {
		t.Fatalf("after the stream was made again: %+v, before %+v", p, old)
	}
	c := managertest.DialHist(t, tw, "json")
	defer c.Close()
	got := c.Subscribe(topic, managertest.Since(topic, managertest.HistPos{Epoch: old.Epoch, Offset: old.Offset}))[topic]
	if got.Recovered || got.Epoch != p.Epoch {
		t.Fatalf("since the old epoch: %+v, want not recovered in %q", got, p.Epoch)
	}
}

// TestHistoryBackendPublish: a backend publishing on a history topic's
// HistorySubject is kept and delivered with its offset.
func TestHistoryBackendPublish(t *testing.T) {
	s := startJetStream(t)
	m := newManager(t, []string{s.ClientURL()})
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithNodeID(1), firetower.WithManager(m),
		firetower.WithHistory(100, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, tw) })
	const topic = "backend"
	c := managertest.DialHist(t, tw, "msgpack")
	defer c.Close()
	pos := c.Subscribe(topic, nil)[topic]
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(m.HistorySubject(topic), []byte(`"from a backend"`)); err != nil {
		t.Fatal(err)
	}
	if o, d := c.Delivery(topic); o != pos.Offset+1 || d != "from a backend" {
		t.Fatalf("delivery %d %q, want offset %d", o, d, pos.Offset+1)
	}
}

// TestHistoryStreamDeletedThenRead: a stream deleted behind the gateway's
// back is made again by the next read, with a new epoch.
func TestHistoryStreamDeletedThenRead(t *testing.T) {
	s := startJetStream(t)
	m := newManager(t, []string{s.ClientURL()})
	tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithNodeID(1), firetower.WithManager(m),
		firetower.WithHistory(100, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, tw) })
	const topic = "deleted"
	old, err := tw.PublishOffset(context.Background(), topic, []byte(`1`))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), m.StreamName(topic)); err != nil {
		t.Fatal(err)
	}
	r, err := tw.History(context.Background(), topic, &firetower.Position{Offset: 0, Epoch: old.Epoch}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Recovered || r.Top.Epoch == old.Epoch || r.Top.Offset != 0 {
		t.Fatalf("history of a stream made again: %+v, old position %+v", r, old)
	}
}
