package managertest

import (
	"testing"

	"github.com/firetower-go/firetower"
)

// RunWildcards runs the wildcard scenarios alone (Run runs them too).
func RunWildcards(t *testing.T, c Cluster) {
	t.Run("WildcardRouting", func(t *testing.T) { wildcardRouting(t, c) })
	t.Run("WildcardOverlapOnce", func(t *testing.T) { wildcardOverlap(t, c) })
}

// wildcardOverlap: a node with interest in a topic and in two patterns
// that match it gets each publish once from its Manager (NATS would send
// one copy per subscription): the topic's subscriber gets it once, and a
// connection subscribed to both patterns once per subscription, as a
// single node would deliver it.
func wildcardOverlap(t *testing.T, c Cluster) {
	towers := Gateways(t, c, 2, firetower.WithWildcards(true))
	WaitCluster(t, towers) // polls: the scenario is about patterns, not about Start
	exact := Dial(t, towers[1])
	exact.Subscribe("/ov/x")
	pats := Dial(t, towers[1])
	pats.Subscribe("/ov/*")
	pats.Subscribe("/ov/**")
	WaitCount(t, towers[0], "/ov/**", 1)
	Probe(t, c, towers[0], "/ov/x", exact, pats)

	a := Dial(t, towers[0])
	a.Publish("/ov/x", `1`)
	a.Publish("/ov/x/end", `2`) // only /ov/** matches: a marker after the first
	exact.ExpectDelivery("/ov/x", `1`)
	pats.ExpectDelivery("/ov/x", `1`)
	pats.ExpectDelivery("/ov/x", `1`) // once per matching subscription
	pats.ExpectDelivery("/ov/x/end", `2`)
	a.Publish("/ov/y", `3`)
	pats.ExpectDelivery("/ov/y", `3`)
	pats.ExpectDelivery("/ov/y", `3`)
	a.Publish("/ov/x", `4`)
	exact.ExpectDelivery("/ov/x", `4`) // not a second copy of 1
}

// wildcardRouting: with WithWildcards on two gateways, a node whose only
// interest is in patterns gets the publishes made on the other node to
// the topics they match, with their concrete topics, and no others; the
// pattern's count is cluster-wide; after an unsubscribe the pattern routes
// nothing more.
func wildcardRouting(t *testing.T, c Cluster) {
	towers := Gateways(t, c, 2, firetower.WithWildcards(true))
	WaitCluster(t, towers) // polls: the scenario is about patterns, not about Start
	b := Dial(t, towers[1])
	b.Subscribe("/wc/*")
	b.Subscribe("/deep/**")
	WaitCount(t, towers[0], "/wc/*", 1)
	Probe(t, c, towers[0], "/wc/probe", b)
	Probe(t, c, towers[0], "/deep/probe/x", b)

	a := Dial(t, towers[0])
	a.Publish("/wc/one", `1`)
	a.Publish("/wc/one/two", `"not for /wc/*"`)
	a.Publish("/deep/a/b/c", `2`)
	b.ExpectDelivery("/wc/one", `1`)
	b.ExpectDelivery("/deep/a/b/c", `2`) // the one in between matched nothing

	// A publish to a pattern is refused, on any node.
	a.expectError(a.Request("publish", "/wc/*", `3`), "invalid_topic")

	b.Unsubscribe("/wc/*")
	WaitCount(t, towers[0], "/wc/*", 0)
	a.Publish("/wc/two", `"after the unsubscribe"`)
	a.Publish("/deep/x", `4`)
	b.ExpectDelivery("/deep/x", `4`)
}
