package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/httpapi"
)

func TestHistoryEndpointAndPublishOffset(t *testing.T) {
	e := newEnv(t, httpapi.Config{}, firetower.WithHistory(5, time.Hour, "h/"))
	const topic = "h/room-1/é"
	path := "/api/v1/history/" + url.PathEscape(topic)

	// before any publish: an empty stream with its epoch
	got := e.ok("GET", path, "")
	epoch, _ := got["epoch"].(string)
	if epoch == "" || got["offset"] != 0.0 || got["topic"] != topic || len(got["publications"].([]any)) != 0 {
		t.Fatalf("empty history: %v", got)
	}

	a := e.dial("a", nil)
	a.subscribe(topic)
	for i := 1; i <= 7; i++ {
		body, _ := json.Marshal(map[string]any{"topic": topic, "data": map[string]int{"n": i}})
		ans := e.ok("POST", "/api/v1/publish", string(body))
		if ans["offset"] != float64(i) || ans["epoch"] != epoch {
			t.Fatalf("publish %d answered %v", i, ans)
		}
		m, raw := a.next()
		var off struct{ Offset uint64 }
		_ = json.Unmarshal(raw, &off)
		if m.Type != "publish" || off.Offset != uint64(i) || string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("delivery %s", raw)
		}
	}
	// a string that is not JSON through the Go API, delivered as a JSON string
	if _, err := e.tower.PublishOffset(t.Context(), topic, []byte("plain")); err != nil {
		t.Fatal(err)
	}

	r := e.do("GET", path+"?limit=2", "")
	if r.status != http.StatusOK {
		t.Fatalf("got %s", r)
	}
	checkJSONType(t, r)
	want := fmt.Sprintf(`{"epoch":%q,"offset":8,"publications":[{"offset":7,"data":{"n":7}},{"offset":8,"data":"plain"}],"topic":%q}`, epoch, topic)
	if string(r.body) != want+"\n" && string(r.body) != want {
		t.Fatalf("got  %s\nwant %s", r.body, want)
	}
	// without limit: every publication kept (the size is 5), oldest first
	got = e.ok("GET", path, "")
	pubs := got["publications"].([]any)
	if len(pubs) != 5 || pubs[0].(map[string]any)["offset"] != 4.0 {
		t.Fatalf("history %v", got)
	}

	// several topics: offsets of those with history
	ans := e.ok("POST", "/api/v1/publish", `{"topics":["h/x","plain"],"data":1}`)
	if offs, _ := ans["offsets"].(map[string]any); len(offs) != 1 || offs["h/x"] != 1.0 || ans["offset"] != nil {
		t.Fatalf("answer %v", ans)
	}
	// a topic without history: no offset, and no history
	if ans := e.ok("POST", "/api/v1/publish", `{"topic":"plain","data":1}`); ans["offset"] != nil || ans["offsets"] != nil {
		t.Fatalf("answer %v", ans)
	}
	wantError(t, e.do("GET", "/api/v1/history/plain", ""), http.StatusNotFound, "not_found")
	wantError(t, e.do("GET", path+"?limit=-1", ""), http.StatusBadRequest, firetower.CodeBadRequest)
	wantError(t, e.do("GET", path+"?limit=x", ""), http.StatusBadRequest, firetower.CodeBadRequest)
	wantError(t, e.do("GET", "/api/v1/history/$firetower/x", ""), http.StatusNotFound, "not_found")
}
