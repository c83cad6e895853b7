package firetower

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/firetower-go/firetower/transport"
)

func flatten(l connList) []*transport.Conn {
	var out []*transport.Conn
	for _, b := range l {
		out = append(out, b...)
	}
	return out
}

// TestConnListSnapshots checks the copy-on-write contract: whatever adds
// and removes follow, every earlier snapshot still reads exactly as it did.
func TestConnListSnapshots(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	conns := make([]*transport.Conn, 2000)
	for i := range conns {
		conns[i] = new(transport.Conn)
	}
	var l connList
	var model []*transport.Conn
	type snap struct {
		l    connList
		want []*transport.Conn
	}
	var snaps []snap
	in := map[*transport.Conn]bool{}
	for step := range 20000 {
		c := conns[rng.IntN(len(conns))]
		if in[c] && rng.IntN(2) == 0 {
			var ok bool
			l, ok = l.remove(c)
			if !ok {
				t.Fatalf("step %d: remove of a member reported absent", step)
			}
			i := slices.Index(model, c)
			model = append(model[:i:i], model[i+1:]...)
			delete(in, c)
		} else if !in[c] {
			l = l.add(c)
			model = append(model[:len(model):len(model)], c)
			in[c] = true
		}
		if got := flatten(l); !slices.Equal(got, model) {
			t.Fatalf("step %d: list %d entries, model %d", step, len(got), len(model))
		}
		for _, b := range l {
			if len(b) == 0 || len(b) > blockSize {
				t.Fatalf("step %d: block of %d", step, len(b))
			}
		}
		if step%97 == 0 {
			snaps = append(snaps, snap{l, slices.Clone(model)})
		}
	}
	for i, s := range snaps {
		if !slices.Equal(flatten(s.l), s.want) {
			t.Fatalf("snapshot %d changed after later updates", i)
		}
	}
	if _, ok := l.remove(new(transport.Conn)); ok {
		t.Fatal("remove of a stranger reported present")
	}
}
