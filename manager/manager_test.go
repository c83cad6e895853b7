package manager_test

import (
	"context"
	"testing"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/managertest"
)

// startManagers starts n manager nodes on free ports.
func startManagers(t *testing.T, n int) []*manager.Server {
	t.Helper()
	var out []*manager.Server
	for range n {
		s, err := manager.NewServer(manager.ServerConfig{Addr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		out = append(out, s)
	}
	return out
}

func nodeCluster(managers int) managertest.Cluster {
	return managertest.Cluster{
		Name:  "node",
		Exact: true,
		Managers: func(t *testing.T, n int) []firetower.Manager {
			var addrs []string
			for _, s := range startManagers(t, managers) {
				addrs = append(addrs, s.Addr())
			}
			out := make([]firetower.Manager, n)
			for i := range out {
				c, err := manager.NewClient(manager.ClientConfig{Addrs: addrs})
				if err != nil {
					t.Fatal(err)
				}
				out[i] = c
			}
			return out
		},
	}
}

func TestOneManagerConformance(t *testing.T)  { managertest.Run(t, nodeCluster(1)) }
func TestTwoManagersConformance(t *testing.T) { managertest.Run(t, nodeCluster(2)) }
