package protocol

import "testing"

// benchRequests are the requests BenchmarkDecodeJSON decodes: a publish of
// 100 bytes of data with an id, as the load generator sends them, and
// subscribes in both forms.
var benchRequests = []struct {
	name string
	in   string
}{
	{"publish", `{"type":"publish","topic":"t12","data":"T000012S0000000001N1700000000000000000abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefgh","id":17}`},
	{"publish_object", `{"type":"publish","topic":"chat/room-1","data":{"user":"alice","text":"hello there, how are you today?","n":[1,2.5,-3e2],"ok":true},"id":"r-42"}`},
	{"subscribe_topics", `{"type":"subscribe","topics":["news","chat/room-1","prices.eur"],"id":3}`},
	{"subscribe_topic", `{"type":"subscribe","topic":"news","id":"s1"}`},
	{"ping", `{"type":"ping","id":99}`},
}

func BenchmarkDecodeJSON(b *testing.B) {
	for _, br := range benchRequests {
		in := []byte(br.in)
		for _, dec := range []struct {
			name string
			f    func([]byte) (*Request, *RequestError)
		}{{"std", decodeJSONStd}, {"DecodeJSON", DecodeJSON}} {
			b.Run(br.name+"/"+dec.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(in)))
				for b.Loop() {
					if _, rerr := dec.f(in); rerr != nil {
						b.Fatal(rerr)
					}
				}
			})
		}
	}
}
