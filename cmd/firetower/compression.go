package main

import (
	"flag"

	"github.com/firetower-go/firetower"
)

// addCompressionFlags adds `serve --compression`.
func addCompressionFlags(fs *flag.FlagSet) *bool {
	return fs.Bool("compression", false, "permessage-deflate for the clients that offer it (browsers do): each publish compressed once, answered with server_no_context_takeover")
}

// compressionOptions are the Tower options for --compression.
func compressionOptions(on bool) []firetower.Option {
	if !on {
		return nil
	}
	return []firetower.Option{firetower.WithCompression(0, 0)}
}
