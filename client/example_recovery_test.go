package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/firetower-go/firetower/client"
)

// A chat client that shows the latest 50 messages of a room on join and,
// after a reconnect, the messages it missed; when the server could not
// replay them (it restarted), it reloads the room from the application's
// own store.
func ExampleClient_SubscribeWith() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://127.0.0.1:9999/ws",
		client.WithDeliveryHandler(func(d client.Delivery) {
			fmt.Printf("%s #%d: %s\n", d.Topic, d.Offset, d.Data)
		}),
		client.WithGapHandler(func(r client.Recovery) {
			log.Printf("%s: history lost between %+v and %+v: reloading", r.Topic, r.Since, r.Top)
		}))
	if err != nil {
		log.Print(err)
		return
	}
	defer c.Close()
	recs, err := c.SubscribeWith(ctx, client.SubscribeOptions{Last: 50}, "/chat/go")
	if err != nil {
		log.Print(err)
		return
	}
	if r, ok := recs["/chat/go"]; ok {
		log.Printf("/chat/go is at %s/%d", r.Top.Epoch, r.Top.Offset)
	}
}
