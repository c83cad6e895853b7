package main

import (
	"flag"

	"github.com/firetower-go/firetower"
)

// demoRooms is the prefix of the chat demo's rooms: the server always
// tracks presence there, so the demo page shows who is online.
const demoRooms = "/chat/"

// presenceFlags are serve's --presence: join, leave and count events for
// every non-system topic (firetower.WithPresence). Without it the server
// tracks presence on the demo's rooms (/chat/) only.
type presenceFlags struct {
	all *bool
}

func addPresenceFlags(fs *flag.FlagSet) presenceFlags {
	return presenceFlags{
		all: fs.Bool("presence", false, "join/leave/count events for every non-system topic (default: "+demoRooms+" topics only, the demo's rooms)"),
	}
}

// options returns the Tower options the flags ask for.
func (p presenceFlags) options() []firetower.Option {
	if *p.all {
		return []firetower.Option{firetower.WithPresence()}
	}
	return []firetower.Option{firetower.WithPresence(demoRooms)}
}

// wildcardFlags are serve's --wildcards: "*" and "**" subscriptions
// (firetower.WithWildcards).
type wildcardFlags struct {
	on *bool
}

func addWildcardFlags(fs *flag.FlagSet) wildcardFlags {
	return wildcardFlags{
		on: fs.Bool("wildcards", false, `let clients subscribe to patterns: a "*" segment matches one segment, a last "**" the rest`),
	}
}

func (w wildcardFlags) options() []firetower.Option {
	return []firetower.Option{firetower.WithWildcards(*w.on)}
}
