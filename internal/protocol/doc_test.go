package protocol

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// docTable returns the rows of the table in PROTOCOL.md whose header row
// is header: for each row, the first `code span` of each cell.
func docTable(t *testing.T, header string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "PROTOCOL.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == header {
			start = i + 2 // past the |---| row
			break
		}
	}
	if start < 0 {
		t.Fatalf("PROTOCOL.md has no table with the header %s", header)
	}
	var rows [][]string
	for _, l := range lines[start:] {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") {
			break
		}
		var row []string
		for _, cell := range strings.Split(strings.Trim(l, "|"), "|") {
			_, code, ok := strings.Cut(cell, "`")
			code, _, ok2 := strings.Cut(code, "`")
			if !ok || !ok2 {
				t.Fatalf("PROTOCOL.md: a cell without a `code span`: %s", l)
			}
			row = append(row, code)
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		t.Fatalf("PROTOCOL.md: the table %s is empty", header)
	}
	return rows
}

func docHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("PROTOCOL.md: %q is not hex: %v", s, err)
	}
	return b
}

// TestDocMsgpackDataToJSON: the table of PROTOCOL.md section 2 ("Data")
// is what a msgpack publish's data becomes for JSON subscribers, or the
// error it gets: big integers stay exact, maps with keys other than
// strings are refused.
func TestDocMsgpackDataToJSON(t *testing.T) {
	for _, row := range docTable(t, "| a msgpack client publishes (hex) | JSON subscribers receive |") {
		in, want := docHex(t, row[0]), row[1]
		req := mpMap(t, "type", "publish", "topic", "t", "id", "x", "data", msgpack.RawMessage(in))
		r, rerr := DecodeMsgpack(req)
		if code, refused := strings.CutPrefix(want, "refused: "); refused || want == CodeBadRequest {
			if !refused {
				code = want
			}
			if rerr == nil {
				t.Errorf("%s: delivered as %s, PROTOCOL.md says it is refused with %s", row[0], r.Data, code)
				continue
			}
			if rerr.Code != code || !bytes.Equal(rerr.ID, mpMarshal(t, "x")) {
				t.Errorf("%s: error %q (id %x), want %q with the request's id", row[0], rerr.Code, rerr.ID, code)
			}
			continue
		}
		if rerr != nil {
			t.Errorf("%s: refused (%v), PROTOCOL.md says it becomes %s", row[0], rerr, want)
			continue
		}
		if string(r.Data) != want {
			t.Errorf("%s: becomes %s, PROTOCOL.md says %s", row[0], r.Data, want)
		}
	}
}

// TestDocJSONDataToMsgpack: the second table is what a JSON publish's data
// becomes in the delivery a msgpack subscriber receives.
func TestDocJSONDataToMsgpack(t *testing.T) {
	for _, row := range docTable(t, "| a JSON client publishes | msgpack subscribers receive (hex) |") {
		in, want := row[0], docHex(t, row[1])
		p, err := AppendDeliveryMsgpack(nil, "t", []byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		var env map[string]msgpack.RawMessage
		if err := msgpack.Unmarshal(p, &env); err != nil {
			t.Fatalf("%s: delivery %x: %v", in, p, err)
		}
		if !bytes.Equal(env["data"], want) {
			t.Errorf("%s: msgpack data %x, PROTOCOL.md says %x", in, []byte(env["data"]), want)
		}
	}
}
