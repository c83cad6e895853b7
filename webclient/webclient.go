// Package webclient holds firetower.js, the browser client of the firetower
// protocol, and serves it. The firetower binary serves it at /firetower.js
// and the dashboard at /dashboard/firetower.js; library users mount
// Handler wherever their pages load it from.
//
// The client's documentation is the comment at the top of firetower.js.
package webclient

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed firetower.js
var source []byte

// Source returns a copy of firetower.js.
func Source() []byte { return bytes.Clone(source) }

// Handler serves firetower.js (GET and HEAD, with an ETag for revalidation).
func Handler() http.Handler {
	sum := sha256.Sum256(source)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(source))
	})
}
