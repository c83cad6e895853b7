// Package bench compares firetower with the servers a user would pick
// instead (a gorilla/websocket hub, centrifuge) and with the physical floor
// (a minimal gnet server), on the same sockets, frames and load generator.
// It is its own module so the comparison libraries never enter firetower's
// go.mod. Linux only (epoll, /proc). See README.md.
package bench
