//go:build !linux || poll_opt

package transport

import "github.com/panjf2000/gnet/v2"

// Without epoll (or with gnet's poll_opt poller) there is no read gate: a
// paused connection's bytes wait in gnet's buffer, bounded by
// Config.PausedBufferLimit.
func epollFD(gnet.EventLoop) int { return -1 }

func setReadInterest(int, *Conn, bool) bool { return false }
