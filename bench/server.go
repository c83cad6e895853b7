//go:build linux

package bench

import (
	"fmt"
	"net"
	"strconv"
)

// server is one of the websocket servers under test, running in this
// process. Publish is each server's own server-side publish API: the
// benchmarks publish in-process, so what is measured is the fan-out from one
// publish to the subscribers' sockets, the same work for every server.
type server interface {
	// Addr is the bound "host:port".
	Addr() string
	// Path is the websocket upgrade path.
	Path() string
	// Flavour is the client protocol the load generator must speak.
	Flavour() string
	// Publish sends data (a JSON value) to every subscriber of topic.
	Publish(topic string, data []byte) error
	// Close stops the server and everything it started.
	Close() error
}

// writeCounter is implemented by the servers that count their socket
// writes (for the BENCH_VERBOSE diagnostics).
type writeCounter interface {
	Writes() uint64
}

// serverKinds are the servers every scenario runs against, in table order.
var serverKinds = []string{"firetower", "gorilla", "centrifuge", "floor"}

// chatKinds are BenchmarkChat's servers: serverKinds with firetower-delay
// (firetower with WithWriteDelay) after firetower and centrifuge-delay
// (centrifuge with its WriteDelay, the same delay) after centrifuge; all, or
// those named in BENCH_SERVERS.
func chatKinds() []string {
	return filterKinds([]string{"firetower", "firetower-delay", "gorilla", "centrifuge", "centrifuge-delay", "floor"})
}

func newServer(kind string) (server, error) {
	switch kind {
	case "firetower":
		return newFiretowerServer()
	case "gorilla":
		return newGorillaHub()
	case "centrifuge":
		return newCentrifugeServer()
	case "floor":
		return newFloorServer()
	case "firetower-delay": // not in serverKinds: only BenchmarkChat runs it (chatKinds)
		return newFiretowerDelay()
	case "centrifuge-delay": // the same, for centrifuge
		return newCentrifugeServerDelay(chatWriteDelay)
	case "firetower-mounted": // issue 14; not in serverKinds: BenchmarkMount runs it
		return newFiretowerMounted(nil)
	case "firetower-tls", "gorilla-tls": // issue 14; BenchmarkTLS runs them
		tc, err := benchTLS()
		if err != nil {
			return nil, err
		}
		if kind == "gorilla-tls" {
			h, err := newGorillaHubTLS(tc)
			return gorillaTLS{h}, err
		}
		return newFiretowerMounted(tc)
	}
	return nil, fmt.Errorf("bench: unknown server %q", kind)
}

// flavourOf is the client protocol of a server kind.
func flavourOf(kind string) string {
	if kind == "centrifuge" || kind == "centrifuge-delay" {
		return flavourCentrifuge
	}
	return flavourFiretower
}

func hostPort(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return net.JoinHostPort(ta.IP.String(), strconv.Itoa(ta.Port))
	}
	return a.String()
}
