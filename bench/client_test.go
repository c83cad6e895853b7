package bench

import (
	"context"
	"testing"
	"time"

	"github.com/firetower-go/firetower"
	"github.com/firetower-go/firetower/client"
)

// BenchmarkGoClient measures the Go client (package client) against a
// firetower server in this process: one op is a publish that waits for its
// ack plus the delivery of that message to a second client, one message at
// a time (a round trip, not a throughput figure).
func BenchmarkGoClient(b *testing.B) {
	for _, tc := range []struct {
		name  string
		codec client.Codec
	}{{"json", client.JSON}, {"msgpack", client.Msgpack}} {
		b.Run(tc.name, func(b *testing.B) {
			tw, err := firetower.New(firetower.WithAddr("127.0.0.1:0"), firetower.WithPublishPolicy(firetower.PublishAny))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := tw.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer tw.Shutdown(context.Background())
			url := "ws://" + tw.Addr() + "/ws"
			got := make(chan []byte, 1)
			sub, err := client.Dial(ctx, url, client.WithCodec(tc.codec), client.WithHandler(func(_ string, data []byte) {
				got <- data
			}))
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			if err := sub.Subscribe(ctx, "bench/client"); err != nil {
				b.Fatal(err)
			}
			pub, err := client.Dial(ctx, url, client.WithCodec(tc.codec))
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			payload := []byte(`{"seq":1,"text":"a message of about a hundred bytes, as the other benchmarks send them....."}`)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := pub.Publish(ctx, "bench/client", payload); err != nil {
					b.Fatal(err)
				}
				select {
				case d := <-got:
					if len(d) == 0 {
						b.Fatal("empty delivery")
					}
				case <-ctx.Done():
					b.Fatal("no delivery")
				}
			}
		})
	}
}
