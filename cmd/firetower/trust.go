package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/firetower-go/firetower"
)

// trustFlags are the flags of the HTTP side's defences, shared by serve
// and manager: where the API key comes from, the hosts and browser origins
// the server answers, and the HTTP timeouts.
type trustFlags struct {
	keyFile     *string
	hosts       *string
	origins     *string // nil for the manager: it serves no browser
	readTimeout *time.Duration
}

// addTrustFlags registers the flags on fs; withOrigins adds
// --allowed-origins (serve).
func addTrustFlags(fs *flag.FlagSet, withOrigins bool) *trustFlags {
	tf := &trustFlags{
		// Defaults from the environment are read after parsing (loadKey),
		// so that they never show in --help.
		keyFile: fs.String("api-key-file", "",
			"file holding the API key (env FIRETOWER_API_KEY_FILE), so that it does not show in ps; instead of --api-key"),
		hosts: fs.String("allowed-hosts", "",
			"host names the HTTP server answers for without an API key, besides IP addresses and localhost (name,*.domain or *), comma-separated"),
		readTimeout: fs.Duration("http-read-timeout", defaultHTTPTimeouts().read,
			"longest time to read one HTTP request, body included (slow clients are cut off)"),
	}
	if withOrigins {
		tf.origins = fs.String("allowed-origins", "",
			"browser origins allowed besides the same host, comma-separated (a host name, *.domain, a full origin such as https://app.example, or *)")
	}
	return tf
}

// loadKey resolves the API key: a flag not given takes its value from the
// environment (FIRETOWER_API_KEY, FIRETOWER_API_KEY_FILE); a key file, when
// there is one, replaces the key from FIRETOWER_API_KEY and may not be
// combined with --api-key.
func (tf *trustFlags) loadKey(fs *flag.FlagSet, apiKey *string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["api-key"] {
		*apiKey = os.Getenv("FIRETOWER_API_KEY")
	}
	if !set["api-key-file"] {
		*tf.keyFile = os.Getenv("FIRETOWER_API_KEY_FILE")
	}
	if *tf.keyFile == "" {
		return nil
	}
	if set["api-key"] {
		return errors.New("give --api-key or --api-key-file, not both")
	}
	key, err := readKeyFile(*tf.keyFile)
	if err != nil {
		return err
	}
	*apiKey = key
	return nil
}

// readKeyFile reads an API key: the file's first line, without blanks
// around it; an empty key or a file over 4 KiB is an error.
func readKeyFile(path string) (string, error) {
	f, err := os.Open(path) //nolint:gosec // G304: a file the operator names on the command line
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: a Close error changes nothing
	b, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	if len(b) > 4096 {
		return "", fmt.Errorf("--api-key-file %s: over 4 KiB, not a key", path)
	}
	key, _, _ := strings.Cut(string(b), "\n")
	key = strings.TrimSpace(key)
	if key == "" {
		return "", fmt.Errorf("--api-key-file %s: no key on its first line", path)
	}
	return key, nil
}

// towerOptions maps --allowed-origins onto the Tower. The Tower allows only
// the listed origins once it is given some, while the flag adds origins to
// the same host: the names this server answers for (loopback names, the
// listen addresses, --allowed-hosts) are listed too.
func (tf *trustFlags) towerOptions(listen ...string) []firetower.Option {
	if tf.origins == nil {
		return nil
	}
	origins := splitList(*tf.origins)
	if len(origins) == 0 {
		return nil
	}
	same := []string{"localhost", "127.0.0.1", "::1"}
	for _, a := range listen {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				same = append(same, h)
			}
		}
	}
	same = append(same, splitList(*tf.hosts)...)
	return []firetower.Option{firetower.WithAllowedOrigins(append(origins, same...)...)}
}

// httpConfig is what the servers of a command trust, with the one Guard
// they share.
func (tf *trustFlags) httpConfig(apiKey string, log *slog.Logger) httpConfig {
	hc := httpConfig{apiKey: apiKey, allowedHosts: splitList(*tf.hosts), log: log}
	if tf.origins != nil {
		hc.allowedOrigins = splitList(*tf.origins)
	}
	hc.shared = hc.guard()
	return hc
}

// timeouts are the HTTP server's timeouts, --http-read-timeout applied.
func (tf *trustFlags) timeouts() httpTimeouts {
	to := defaultHTTPTimeouts()
	if *tf.readTimeout > 0 {
		to.read = *tf.readTimeout
		to.readHeader = min(to.readHeader, to.read)
	}
	return to
}

// httpTimeouts bound what one client can hold of the HTTP server.
type httpTimeouts struct {
	readHeader time.Duration // the request head
	read       time.Duration // the whole request, body included
	write      time.Duration // from the end of the head to the end of the answer
	idle       time.Duration // a keep-alive connection between requests
}

// defaultHTTPTimeouts: a request has 10s for its head and 30s in all; the
// answer is written within 30s after the request (the API's own
// operations time out after 10s); an idle keep-alive connection is closed
// after 2 minutes.
func defaultHTTPTimeouts() httpTimeouts {
	return httpTimeouts{readHeader: 10 * time.Second, read: 30 * time.Second, write: 60 * time.Second, idle: 2 * time.Minute}
}

// newHTTPServer is the HTTP server of the commands, with its timeouts.
// (A websocket hijacked from it loses the deadlines: net/http clears them.)
func newHTTPServer(h http.Handler, to httpTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: to.readHeader,
		ReadTimeout:       to.read,
		WriteTimeout:      max(to.write, to.read),
		IdleTimeout:       to.idle,
		MaxHeaderBytes:    64 << 10,
	}
}
