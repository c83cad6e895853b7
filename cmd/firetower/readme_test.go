package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestREADMEPushFromBackend does what README.md's "Push from a backend"
// section shows: a server started as the README starts it, subscribers on
// /chat/world, then the README's curl command lines run as they are written
// (only the host:port changed to the server's). The commands are read from
// README.md, so the test breaks when the README drifts from the binary.
func TestREADMEPushFromBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the firetower binary and curl: skipped with -short")
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed: cannot run the README's curl examples (apt-get install curl)")
	}

	publish, count := readmeCommands(t)
	const topic = "/chat/world"

	// What the README publishes, taken from its own command line.
	var body struct {
		Topic string          `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(argAfter(t, publish.args, "-d")), &body); err != nil {
		t.Fatalf("README publish body is not JSON: %v", err)
	}
	if body.Topic != topic {
		t.Fatalf("README publishes to %q; this test subscribes to %q", body.Topic, topic)
	}

	bin := buildBinary(t)
	srv := startBinary(t, bin)

	// Two subscribers, as in two browser tabs of the demo: the README shows
	// a count of 2.
	subs := []*wsSub{dialSub(t, srv.ws, topic), dialSub(t, srv.ws, topic)}

	out := runCurl(t, curl, publish.args, srv.http)
	var res struct {
		OK bool `json:"ok"`
	}
	if err := json.Unmarshal(out, &res); err != nil || !res.OK {
		t.Fatalf("README publish curl printed %q, want a JSON answer with \"ok\":true", out)
	}
	for i, s := range subs {
		s.waitFor(t, i, topic, body.Data)
	}

	out = runCurl(t, curl, count.args, srv.http)
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("README count curl printed %q: not JSON: %v", out, err)
	}
	want := map[string]any{"topic": topic, "count": float64(len(subs))}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("README count curl printed %s, want %v", out, want)
	}
	// The README shows the answer in a comment: it must be what one gets.
	if count.comment != "" {
		var shown map[string]any
		if err := json.Unmarshal([]byte(count.comment), &shown); err != nil {
			t.Errorf("README shows %q after the count command: not the JSON answer: %v", count.comment, err)
		} else if !reflect.DeepEqual(shown, got) {
			t.Errorf("README shows %s as the count answer; the server answered %s", count.comment, out)
		}
	}

	srv.terminate(t)
}

type shellCommand struct {
	line    string
	args    []string
	comment string // text after an unquoted #, trimmed
}

// readmeCommands returns the publish and count commands of the first ```sh
// block after "Push from a backend" in README.md.
func readmeCommands(t *testing.T) (publish, count shellCommand) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatalf("reading README.md: %v", err)
	}
	text := string(readme)
	i := strings.Index(text, "Push from a backend")
	if i < 0 {
		t.Fatal(`README.md has no "Push from a backend" section`)
	}
	text = text[i:]
	j := strings.Index(text, "```sh\n")
	if j < 0 {
		t.Fatal("README.md has no ```sh block after \"Push from a backend\"")
	}
	text = text[j+len("```sh\n"):]
	k := strings.Index(text, "```")
	if k < 0 {
		t.Fatal("README.md: the ```sh block after \"Push from a backend\" is not closed")
	}
	var cmds []shellCommand
	sc := bufio.NewScanner(strings.NewReader(text[:k]))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		args, comment, err := splitShell(line)
		if err != nil {
			t.Fatalf("README.md command %q: %v", line, err)
		}
		if len(args) == 0 || args[0] != "curl" {
			t.Fatalf("README.md command %q: want a curl command", line)
		}
		cmds = append(cmds, shellCommand{line: line, args: args, comment: comment})
	}
	var havePub, haveCount bool
	for _, c := range cmds {
		switch {
		case !havePub && strings.Contains(c.line, "/api/v1/publish"):
			publish, havePub = c, true
		case !haveCount && strings.Contains(c.line, "/api/v1/topics/"):
			count, haveCount = c, true
		}
	}
	if !havePub || !haveCount {
		t.Fatalf("README.md \"Push from a backend\" block: want a curl to /api/v1/publish and one to /api/v1/topics/<topic>, got %q", text[:k])
	}
	return publish, count
}

// splitShell splits one line of POSIX shell into words the way sh would for
// the simple commands of a README: blanks separate words, single quotes
// keep everything, double quotes keep everything but \" \\ \$ \`, a
// backslash outside quotes escapes the next character, and an unquoted #
// at the start of a word starts a comment. Anything needing expansion ($,
// `, globs, redirections) is refused rather than guessed at.
func splitShell(line string) (words []string, comment string, err error) {
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, strings.TrimSpace(line[i+1:]), nil
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, "", errors.New("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				switch line[i] {
				case '\\':
					if i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0 {
						i++
					}
				case '$', '`':
					return nil, "", fmt.Errorf("expansion in double quotes at %d", i)
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, "", errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(line) {
				return nil, "", errors.New("line continuation is not supported")
			}
			i++
			cur.WriteByte(line[i])
			inWord = true
		case strings.IndexByte("$`*?[|&;<>(){}", c) >= 0:
			return nil, "", fmt.Errorf("shell syntax %q at %d is not supported here", c, i)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, "", nil
}

func argAfter(t *testing.T, args []string, flag string) string {
	t.Helper()
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	t.Fatalf("command %q has no %s argument", args, flag)
	return ""
}

// readmeHostPort is the HTTP address the README's commands use (the
// default --http-addr, spelled as the README spells it).
var readmeHostPort = regexp.MustCompile(`\b(localhost|127\.0\.0\.1):9998\b`)

// runCurl runs a README curl command with only its host:port replaced.
func runCurl(t *testing.T, curl string, args []string, hostPort string) []byte {
	t.Helper()
	adapted := make([]string, len(args)-1)
	n := 0
	for i, a := range args[1:] {
		if readmeHostPort.MatchString(a) {
			n++
		}
		adapted[i] = readmeHostPort.ReplaceAllLiteralString(a, hostPort)
	}
	if n != 1 {
		t.Fatalf("README command %q: want exactly one argument with localhost:9998 (the default HTTP address), found %d", args, n)
	}
	cmd := exec.Command(curl, adapted...)
	// No proxy for a loopback server, whatever the environment says.
	cmd.Env = append(os.Environ(), "NO_PROXY=*", "no_proxy=*")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
		}
	})
	out, err := cmd.Output()
	close(done)
	timer.Stop()
	if err != nil {
		t.Fatalf("curl %q: %v\n%s", adapted, err, stderr.Bytes())
	}
	t.Logf("curl %q -> %s", adapted, bytes.TrimSpace(out))
	return bytes.TrimSpace(out)
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "firetower")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type binServer struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan struct{}
	err    error // set before done is closed
	ws     string
	http   string // host:port
	waited bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	wsLine   = regexp.MustCompile(`^websocket listening on (ws://\S+)$`)
	httpLine = regexp.MustCompile(`^http listening on http://(\S+)$`)
)

// startBinary runs `firetower serve` on free loopback ports and reads the
// addresses it prints.
func startBinary(t *testing.T, bin string) *binServer {
	t.Helper()
	s := &binServer{out: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "serve", "--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	// The README's commands carry no API key: the server must not want one.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FIRETOWER_API_KEY=") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		if !s.waited {
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.out.String())
		}
	})
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()

	deadline := time.After(30 * time.Second)
	for s.ws == "" || s.http == "" {
		select {
		case <-deadline:
			t.Fatalf("the server printed no listening lines within 30s")
		case <-s.done:
			s.waited = true
			t.Fatalf("the server exited before printing its addresses: %v", s.err)
		case <-time.After(20 * time.Millisecond):
		}
		for _, l := range strings.Split(s.out.String(), "\n") {
			if m := wsLine.FindStringSubmatch(l); m != nil {
				s.ws = m[1]
			}
			if m := httpLine.FindStringSubmatch(l); m != nil {
				s.http = m[1]
			}
		}
	}
	return s
}

// terminate stops the server as an operator would and wants exit status 0.
func (s *binServer) terminate(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.done:
		s.waited = true
	case <-time.After(30 * time.Second):
		t.Fatalf("the server is still running 30s after SIGTERM")
	}
	if s.err != nil {
		t.Errorf("the server exited with %v after SIGTERM, want status 0", s.err)
	}
}

type wsSub struct {
	ws   *websocket.Conn
	msgs chan []byte
	errc chan error
}

func dialSub(t *testing.T, wsURL, topic string) *wsSub {
	t.Helper()
	if _, err := url.Parse(wsURL); err != nil {
		t.Fatalf("bad websocket URL %q: %v", wsURL, err)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	s := &wsSub{ws: ws, msgs: make(chan []byte, 64), errc: make(chan error, 1)}
	go func() {
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				s.errc <- err
				return
			}
			s.msgs <- p
		}
	}()
	if err := ws.WriteJSON(map[string]any{"type": "subscribe", "topics": []string{topic}, "id": 1}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for {
		m := s.next(t)
		if m.Type == "ack" && string(m.ID) == "1" {
			return s
		}
		if m.Type == "error" {
			t.Fatalf("subscribe to %s: error %s", topic, m.Code)
		}
	}
}

type wsMsg struct {
	Type  string          `json:"type"`
	ID    json.RawMessage `json:"id"`
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	Code  string          `json:"code"`
}

func (s *wsSub) next(t *testing.T) wsMsg {
	t.Helper()
	select {
	case p := <-s.msgs:
		var m wsMsg
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatalf("server sent %q: not JSON: %v", p, err)
		}
		return m
	case err := <-s.errc:
		t.Fatalf("websocket closed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("no message from the server within 10s")
	}
	return wsMsg{}
}

// waitFor reads until a delivery of data on topic arrives, byte for byte;
// other deliveries (the demo's presence counts) are passed over.
func (s *wsSub) waitFor(t *testing.T, i int, topic string, data []byte) {
	t.Helper()
	var seen []string
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-s.msgs:
			var m wsMsg
			if err := json.Unmarshal(p, &m); err == nil && m.Type == "publish" && m.Topic == topic && bytes.Equal(m.Data, data) {
				return
			}
			seen = append(seen, string(p))
		case err := <-s.errc:
			t.Fatalf("subscriber %d: websocket closed before the README's publish arrived (%v); got %q", i, err, seen)
		case <-deadline:
			t.Fatalf("subscriber %d: the README's publish of %s on %s did not arrive within 10s; got %q", i, data, topic, seen)
		}
	}
}

func TestSplitShell(t *testing.T) {
	cases := []struct {
		line    string
		words   []string
		comment string
	}{
		{`curl -X POST localhost:9998/x -d '{"a": "b c"}'`, []string{"curl", "-X", "POST", "localhost:9998/x", "-d", `{"a": "b c"}`}, ""},
		{`curl localhost:9998/a%2Fb     # {"count":2}`, []string{"curl", "localhost:9998/a%2Fb"}, `{"count":2}`},
		{`curl -H "X-API-Key: k\"ey" a\ b x#y`, []string{"curl", "-H", `X-API-Key: k"ey`, "a b", "x#y"}, ""},
		{`echo 'it'"'"'s'`, []string{"echo", "it's"}, ""},
	}
	for _, c := range cases {
		words, comment, err := splitShell(c.line)
		if err != nil || !reflect.DeepEqual(words, c.words) || comment != c.comment {
			t.Errorf("splitShell(%s) = %q, %q, %v; want %q, %q", c.line, words, comment, err, c.words, c.comment)
		}
	}
	for _, bad := range []string{`curl 'open`, `curl "open`, `curl $HOST`, `curl "$HOST"`, `curl a | sh`, `curl a > f`, `curl a \`} {
		if _, _, err := splitShell(bad); err == nil {
			t.Errorf("splitShell(%s): no error, want one", bad)
		}
	}
}
