package firetower

// PresenceTick runs one turn of t's presence loop now (tests of
// coalescing, with a presence interval too long to tick by itself).
func PresenceTick(t *Tower) { t.presenceTick() }

// DeliverRemote hands t a message as its Manager would from another node.
func DeliverRemote(t *Tower, topic string, data []byte) { towerNode{t}.Deliver(topic, data) }
