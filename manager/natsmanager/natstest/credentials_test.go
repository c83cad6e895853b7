package natstest

import (
	"context"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/manager/natsmanager"
	"github.com/firetower-go/firetower/managertest"
)

// startAuthServer starts an embedded NATS server that requires a token or
// a user and password.
func startAuthServer(t *testing.T, token, user, password string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Authorization: token, Username: user, Password: password,
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

// TestCredentials: Config.Token and Config.User/Password reach the NATS
// server: with the right ones two gateways form a cluster, with none or
// wrong ones a gateway cannot start.
func TestCredentials(t *testing.T) {
	for _, c := range []struct {
		name                  string
		token, user, password string
		good, bad, none       natsmanager.Config
	}{
		{name: "token", token: "s3cret-token",
			good: natsmanager.Config{Token: "s3cret-token"}, bad: natsmanager.Config{Token: "wrong"}},
		{name: "user and password", user: "gw", password: "s3cret-password",
			good: natsmanager.Config{User: "gw", Password: "s3cret-password"}, bad: natsmanager.Config{User: "gw", Password: "wrong"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startAuthServer(t, c.token, c.user, c.password)
			mk := func(cfg natsmanager.Config) *natsmanager.Manager {
				cfg.URLs = []string{s.ClientURL()}
				cfg.ReportInterval, cfg.CountTTL = reportInterval, countTTL
				m, err := natsmanager.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			for name, cfg := range map[string]natsmanager.Config{"wrong": c.bad, "missing": c.none} {
				tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithNodeID(9), firetower.WithManager(mk(cfg)))
				if err != nil {
					t.Fatal(err)
				}
				if err := tw.Start(context.Background()); err == nil {
					shutdown(t, tw)
					t.Fatalf("a gateway with %s credentials started on a NATS server that requires them", name)
				}
			}
			a, b := gateway(t, 1, mk(c.good)), gateway(t, 2, mk(c.good))
			cb := managertest.Dial(t, b)
			cb.Subscribe("creds")
			managertest.WaitCount(t, a, "creds", 1)
			managertest.Probe(t, managertest.Cluster{}, a, "creds", cb)
			if err := a.Publish(context.Background(), "creds", []byte(`"hello"`)); err != nil {
				t.Fatal(err)
			}
			cb.ExpectDelivery("creds", `"hello"`)
		})
	}
}
