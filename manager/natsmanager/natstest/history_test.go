package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

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
