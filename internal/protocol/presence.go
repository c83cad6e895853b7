package protocol

import "strconv"

// Presence event kinds: the "type" of a presence message.
const (
	PresenceJoin  = "join"
	PresenceLeave = "leave"
	PresenceCount = "count"
	// LegacyOnSubscribe and LegacyOnUnsubscribe are the v0.4 shapes of a
	// count: {"type":"onSubscribe","data":N}.
	LegacyOnSubscribe   = "onSubscribe"
	LegacyOnUnsubscribe = "onUnsubscribe"
)

// AppendPresenceJSON appends a join or leave event:
// {"type":kind,"topic":T,"conn":C,"user":U}.
func AppendPresenceJSON(dst []byte, kind, topic, conn, user string) []byte {
	dst = append(dst, `{"type":`...)
	dst = AppendJSONString(dst, kind)
	dst = append(dst, `,"topic":`...)
	dst = AppendJSONString(dst, topic)
	dst = append(dst, `,"conn":`...)
	dst = AppendJSONString(dst, conn)
	dst = append(dst, `,"user":`...)
	dst = AppendJSONString(dst, user)
	return append(dst, '}')
}

// AppendPresenceMsgpack is AppendPresenceJSON as a msgpack map with the
// same keys.
func AppendPresenceMsgpack(dst []byte, kind, topic, conn, user string) []byte {
	dst = append(dst, 0x84)
	dst = appendMsgpackStr(dst, "type")
	dst = appendMsgpackStr(dst, kind)
	dst = appendMsgpackStr(dst, "topic")
	dst = appendMsgpackStr(dst, topic)
	dst = appendMsgpackStr(dst, "conn")
	dst = appendMsgpackStr(dst, conn)
	dst = appendMsgpackStr(dst, "user")
	return appendMsgpackStr(dst, user)
}

// AppendCountJSON appends {"type":"count","topic":T,"count":N}.
func AppendCountJSON(dst []byte, topic string, n int64) []byte {
	dst = append(dst, `{"type":"count","topic":`...)
	dst = AppendJSONString(dst, topic)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '}')
}

// AppendCountMsgpack is AppendCountJSON as a msgpack map.
func AppendCountMsgpack(dst []byte, topic string, n int64) []byte {
	dst = append(dst, 0x83)
	dst = appendMsgpackStr(dst, "type")
	dst = appendMsgpackStr(dst, PresenceCount)
	dst = appendMsgpackStr(dst, "topic")
	dst = appendMsgpackStr(dst, topic)
	dst = appendMsgpackStr(dst, "count")
	return appendMsgpackInt(dst, n)
}

// AppendLegacyCount appends the v0.4 count message
// {"type":"onSubscribe","data":N} (or onUnsubscribe: kind).
func AppendLegacyCount(dst []byte, kind string, n int64) []byte {
	dst = append(dst, `{"type":`...)
	dst = AppendJSONString(dst, kind)
	dst = append(dst, `,"data":`...)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '}')
}

// appendMsgpackInt appends n as a msgpack int64 (0xd3) or, when it fits, a
// positive fixint.
func appendMsgpackInt(dst []byte, n int64) []byte {
	if n >= 0 && n < 128 {
		return append(dst, byte(n))
	}
	u := uint64(n) //nolint:gosec // G115: msgpack int64 is the two's-complement bit pattern
	// Big-endian, most significant byte first.
	return append(dst, 0xd3, byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32), byte(u>>24), byte(u>>16), byte(u>>8), byte(u)) //nolint:gosec // G115: byte() keeps the low byte on purpose (big-endian)
}
