//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager"
	"github.com/firetower-go/firetower/manager/natsmanager"
)

// clusterKinds are the deployments BenchmarkCluster compares, in table
// order: one firetower node (the baseline), two gateways on a topic-manager
// node, two gateways on a NATS server.
var clusterKinds = []string{"single", "manager", "nats"}

// clusterServer is two firetower gateways of one cluster in this process,
// A and B, each with its own Manager: the subscribers connect to B and
// every publish is made on A (Tower.Publish), so every delivery crosses
// gateway A -> manager (or NATS) -> gateway B over loopback TCP. The
// manager node or the NATS server runs in this process too.
type clusterServer struct {
	a, b  *firetower.Tower
	close []func() error // in order: gateways first, then what they use
}

// newClusterServer starts the deployment kind (one of clusterKinds).
func newClusterServer(kind string) (server, error) {
	switch kind {
	case "single":
		return newFiretowerServer()
	case "manager":
		return newManagerCluster()
	case "nats":
		return newNATSCluster()
	}
	return nil, fmt.Errorf("bench: unknown cluster kind %q", kind)
}

func newManagerCluster() (*clusterServer, error) {
	ms, err := manager.NewServer(manager.ServerConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		return nil, err
	}
	if err := ms.Start(context.Background()); err != nil {
		return nil, err
	}
	stop := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return ms.Shutdown(ctx)
	}
	return startGateways(stop, func() (firetower.Manager, error) {
		return manager.NewClient(manager.ClientConfig{Addrs: []string{ms.Addr()}})
	})
}

func newNATSCluster() (*clusterServer, error) {
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host:   "127.0.0.1",
		Port:   -1,
		NoLog:  true,
		NoSigs: true,
	})
	if err != nil {
		return nil, err
	}
	ns.Start()
	stop := func() error { ns.Shutdown(); ns.WaitForShutdown(); return nil }
	if !ns.ReadyForConnections(30 * time.Second) {
		_ = stop()
		return nil, errors.New("nats-server not ready")
	}
	return startGateways(stop, func() (firetower.Manager, error) {
		return natsmanager.New(natsmanager.Config{URLs: []string{ns.ClientURL()}})
	})
}

// startGateways starts gateways A (node 1) and B (node 2), each on a
// Manager of its own from newManager, configured as newFiretowerServer is
// but for the Manager. stop stops what the Managers use; it is called on
// failure and by Close.
func startGateways(stop func() error, newManager func() (firetower.Manager, error)) (*clusterServer, error) {
	c := &clusterServer{}
	fail := func(err error) (*clusterServer, error) {
		c.close = append(c.close, stop)
		return nil, errors.Join(err, c.Close())
	}
	var towers [2]*firetower.Tower
	for i := range towers {
		m, err := newManager()
		if err != nil {
			return fail(err)
		}
		t, err := firetower.New(
			firetower.WithAddr("127.0.0.1:0"),
			firetower.WithNodeID(uint16(i+1)),
			firetower.WithManager(m),
			firetower.WithPublishPolicy(firetower.PublishAny),
		)
		if err != nil {
			return fail(err)
		}
		if err := t.Start(context.Background()); err != nil {
			return fail(err)
		}
		towers[i] = t
		c.close = append(c.close, func() error { return shutdownTower(t) })
	}
	c.a, c.b = towers[0], towers[1]
	c.close = append(c.close, stop)
	return c, nil
}

func shutdownTower(t *firetower.Tower) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return t.Shutdown(ctx)
}

// Addr is gateway B's: the subscribers connect there.
func (c *clusterServer) Addr() string    { return c.b.Addr() }
func (c *clusterServer) Path() string    { return "/ws" }
func (c *clusterServer) Flavour() string { return flavourFiretower }

// Publish publishes on gateway A, which has no subscriber: the message
// reaches them only through the Manager.
func (c *clusterServer) Publish(topic string, data []byte) error {
	return c.a.Publish(context.Background(), topic, data)
}

// Writes is gateway B's number of write calls to client sockets so far.
func (c *clusterServer) Writes() uint64 { return c.b.Stats().Transport.Writes }

func (c *clusterServer) Close() error {
	var errs []error
	for _, f := range c.close {
		errs = append(errs, f())
	}
	c.close = nil
	return errors.Join(errs...)
}
