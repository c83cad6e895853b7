package firetower_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/firetower-go/firetower"
)

// TestWildcardSubscriptions: with WithWildcards(true), "*" and "**"
// subscriptions get the publishes of the topics they match, with the
// concrete topic, in JSON and msgpack; publishing to a pattern and "**"
// before the end are invalid_topic; ConnectNum counts the pattern's own
// subscribers; an unsubscribed pattern gets nothing more.
func TestWildcardSubscriptions(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	tw := ptServer(t, firetower.WithWildcards(true), firetower.WithPublishPolicy(firetower.PublishAny),
		firetower.OnBeforeSubscribe(func(next firetower.Handler) firetower.Handler {
			return func(c *firetower.Context) error {
				mu.Lock()
				seen = append(seen, c.Topics()...)
				mu.Unlock()
				return next(c)
			}
		}))
	one := ptDial(t, tw, "")
	one.sub(t, "/md/*")
	rest := ptDial(t, tw, "msgpack")
	rest.sub(t, "/md/**")
	exact := ptDial(t, tw, "")
	exact.sub(t, "/md/AAPL")
	mu.Lock()
	if !slices.Contains(seen, "/md/*") || !slices.Contains(seen, "/md/**") {
		t.Fatalf("OnBeforeSubscribe saw %v, want the patterns as given", seen)
	}
	mu.Unlock()

	pub := ptDial(t, tw, "")
	pub.pub(t, "/md/AAPL", 1)
	for _, c := range []*ptConn{one, rest, exact} {
		c.expectDelivery(t, "/md/AAPL", "1")
	}
	pub.pub(t, "/md/AAPL/trades", 2)
	rest.expectDelivery(t, "/md/AAPL/trades", "2")
	ptPublish(t, tw, "/md/MSFT", []byte("3"))
	one.expectDelivery(t, "/md/MSFT", "3")
	rest.expectDelivery(t, "/md/MSFT", "3")
	exact.expectQuiet(t)
	one.expectQuiet(t)

	id := pub.nextID()
	pub.send(t, map[string]any{"type": "publish", "topic": "/md/*", "data": 1, "id": id})
	pub.expectError(t, id, "invalid_topic")
	if err := tw.Publish(context.Background(), "/md/**", []byte("1")); !isCode(err, firetower.CodeInvalidTopic) {
		t.Fatalf("Tower.Publish to a pattern: %v, want invalid_topic", err)
	}
	id = pub.nextID()
	pub.send(t, map[string]any{"type": "subscribe", "topic": "/md/**/x", "id": id})
	pub.expectError(t, id, "invalid_topic")
	ptConnectNum(t, tw, "/md/*", 1)
	ptConnectNum(t, tw, "/md/AAPL", 1)

	one.unsub(t, "/md/*")
	ptPublish(t, tw, "/md/IBM", []byte("4"))
	rest.expectDelivery(t, "/md/IBM", "4")
	one.expectQuiet(t)
}

// TestWildcardsOffAreLiteral: without WithWildcards, "*" is an ordinary
// character: "/md/*" is a topic of its own.
func TestWildcardsOffAreLiteral(t *testing.T) {
	tw := ptServer(t, firetower.WithPublishPolicy(firetower.PublishAny))
	c := ptDial(t, tw, "")
	c.sub(t, "/md/*")
	ptPublish(t, tw, "/md/AAPL", []byte("1"))
	ptPublish(t, tw, "/md/*", []byte("2"))
	c.expectDelivery(t, "/md/*", "2")
	c.expectQuiet(t)
}

// TestWildcardAcrossLocalCluster: two Towers on one LocalManager route a
// publish to the node whose only interest is a matching pattern.
func TestWildcardAcrossLocalCluster(t *testing.T) {
	m := firetower.NewLocalManager()
	a := ptServer(t, firetower.WithManager(m), firetower.WithNodeID(1), firetower.WithWildcards(true))
	b := ptServer(t, firetower.WithManager(m), firetower.WithNodeID(2), firetower.WithWildcards(true))
	c := ptDial(t, b, "")
	c.sub(t, "/team/*/room")
	ptPublish(t, a, "/team/7/room", []byte(`"hi"`))
	c.expectDelivery(t, "/team/7/room", `"hi"`)
	ptPublish(t, a, "/team/7/other", []byte(`"no"`))
	c.expectQuiet(t)
}

func isCode(err error, code string) bool {
	var e *firetower.Error
	return errors.As(err, &e) && e.Code == code
}
