//go:build linux && !poll_opt

package transport

import (
	"reflect"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// gnet v2.9 reads every readable socket into the connection's inbound
// buffer and has no way to stop reading one connection. To slow a client
// down through TCP we take its socket out of the loop's epoll read interest
// ourselves (EPOLL_CTL_MOD on gnet's epoll descriptor, with the same event
// data gnet registers) and put it back on resume.
//
// gnet does not export its epoll descriptor, so epollFD reads it from the
// event loop (eventloop.poller.fd in v2.9, default poller). Anything
// unexpected, at lookup or at the first EPOLL_CTL_MOD, disables the gate for
// that loop; the connection then stays paused with its bytes waiting in
// gnet's buffer, bounded by Config.PausedBufferLimit (see OnTraffic).
//
// gnet re-arms read interest by itself whenever it registers or clears
// write interest (after a partial write, and once the buffer drained). A
// paused connection may therefore be read once more (at most gnet's read
// buffer, 64 KiB); OnTraffic then sees it paused and takes it out again.
func epollFD(el gnet.EventLoop) int {
	v := reflect.ValueOf(el)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return -1
	}
	v = v.Elem()
	if v.Kind() != reflect.Struct {
		return -1
	}
	p := v.FieldByName("poller")
	if !p.IsValid() || p.Kind() != reflect.Pointer || p.IsNil() {
		return -1
	}
	p = p.Elem()
	if p.Kind() != reflect.Struct {
		return -1
	}
	fd := p.FieldByName("fd")
	if !fd.IsValid() || fd.Kind() != reflect.Int {
		return -1
	}
	return int(fd.Int())
}

// setReadInterest turns read interest for c's socket on or off, keeping
// write interest while gnet has bytes to write. It reports false when the
// epoll call failed (the gate is then unusable on this loop).
func setReadInterest(epfd int, c *Conn, on bool) bool {
	fd := c.gc.Fd()
	var ev uint32
	if on {
		ev = unix.EPOLLIN | unix.EPOLLPRI
	}
	if c.gc.OutboundBuffered() > 0 {
		ev |= unix.EPOLLOUT
	}
	return unix.EpollCtl(epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: ev}) == nil //nolint:gosec // G115: a file descriptor, which the kernel keeps within int32
}
