package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/firetower-go/firetower"
)

// history answers GET /api/v1/history/<topic>?limit=N: the publications
// kept for a topic with history, oldest first (at most limit, all kept
// without it), with the stream's epoch and the offset of its latest publish:
//
//	{"topic":T,"epoch":"E","offset":TOP,"publications":[{"offset":N,"data":D},...]}
//
// A topic without history answers 404 not_found.
func (a *api) history(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			Error(w, http.StatusBadRequest, firetower.CodeBadRequest, "limit must be an unsigned integer")
			return
		}
		limit = int(n)
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	h, err := a.t.History(ctx, topic, nil, limit)
	if err != nil {
		Fail(w, err)
		return
	}
	type pub struct {
		Offset uint64          `json:"offset"`
		Data   json.RawMessage `json:"data"`
	}
	pubs := make([]pub, 0, len(h.Publications))
	for _, p := range h.Publications {
		d := json.RawMessage(p.Data)
		if !json.Valid(d) {
			b, _ := json.Marshal(string(p.Data)) // as delivered to clients: a JSON string
			d = b
		}
		pubs = append(pubs, pub{p.Offset, d})
	}
	JSON(w, http.StatusOK, map[string]any{"topic": topic, "epoch": h.Top.Epoch, "offset": h.Top.Offset, "publications": pubs})
}

// publishAll publishes data to every topic; offsets has the position of
// each publish on a topic with history (nil when none has).
func (a *api) publishAll(r *http.Request, topics []string, data []byte) (offsets map[string]firetower.Position, err error) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	for _, t := range topics {
		p, err := a.t.PublishOffset(ctx, t, data)
		if err != nil {
			return offsets, err
		}
		if p.Epoch != "" {
			if offsets == nil {
				offsets = make(map[string]firetower.Position, len(topics))
			}
			offsets[t] = p
		}
	}
	return offsets, nil
}

// publishAnswer is POST /api/v1/publish's answer: with the publish's
// "offset" and "epoch" for one topic with history, and "offsets" (topic ->
// offset) for several.
func publishAnswer(topics []string, offsets map[string]firetower.Position) map[string]any {
	ans := map[string]any{"ok": true, "topics": topics}
	if len(offsets) == 0 {
		return ans
	}
	if p, ok := offsets[topics[0]]; ok && len(topics) == 1 {
		ans["offset"], ans["epoch"] = p.Offset, p.Epoch
		return ans
	}
	m := make(map[string]uint64, len(offsets))
	for t, p := range offsets {
		m[t] = p.Offset
	}
	ans["offsets"] = m
	return ans
}
