package firetower

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/firetower-go/firetower/internal/protocol"
)

// The server-side operations (disconnect, unsubscribe, the topic list)
// reach every node of a cluster through the Manager itself: each node has
// interest in controlTopic, where requests go, and in its own node topic,
// where the answers to its requests come back. The cluster-wide count of
// controlTopic is therefore the number of nodes, which tells a requester
// how many answers to wait for.

// ctlMsg is a request on controlTopic or an answer on a node topic.
type ctlMsg struct {
	Op     string   `json:"op"` // disconnect, disconnect_user, unsubscribe, topics; answer
	Req    uint64   `json:"req"`
	From   uint16   `json:"from"`
	Conn   string   `json:"conn,omitempty"`
	User   string   `json:"user,omitempty"`
	Code   int      `json:"code,omitempty"`
	Reason string   `json:"reason,omitempty"`
	Topics []string `json:"topics,omitempty"`
	Query  string   `json:"query,omitempty"`
	Top    int      `json:"top,omitempty"`

	Limit int `json:"limit,omitempty"`

	// answers
	Conns []ConnInfo   `json:"conns,omitempty"`
	N     int          `json:"n,omitempty"`
	Err   *Error       `json:"error,omitempty"`
	Found bool         `json:"found,omitempty"`
	Rows  []TopicCount `json:"rows,omitempty"`
	// presence_stats answers (presence.go)
	Users   []string `json:"users,omitempty"`
	Partial bool     `json:"partial,omitempty"`
}

const opAnswer = "answer"

// defaultCallTimeout bounds a cluster-wide operation whose context has no
// deadline.
const defaultCallTimeout = 5 * time.Second

const (
	// maxNodes is the most nodes a cluster can have (16-bit node ids).
	maxNodes = 1 << 16
	// maxCallBuffer bounds the answers a call buffers before reading them
	// (in a cluster of more nodes, answers that arrive faster than the
	// call reads them past this many are lost, and the call says so).
	maxCallBuffer = 1024
)

func (t *Tower) nodeTopic() string {
	return nodeTopicPrefix + strconv.FormatUint(uint64(t.cfg.nodeID), 10)
}

// systemInterest is the node-level interest every Tower keeps.
func (t *Tower) systemInterest(m map[string]int64) map[string]int64 {
	if m == nil {
		m = make(map[string]int64, 2)
	}
	m[controlTopic] = 1
	m[t.nodeTopic()] = 1
	return m
}

// call sends req to every other node and collects their answers: all of
// them, or those that came before ctx ended (the error then says how many
// are missing).
func (t *Tower) call(ctx context.Context, req *ctlMsg) ([]ctlMsg, error) {
	if t.state.Load() != 1 {
		return nil, ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	nodes, err := t.link.Count(ctx, controlTopic)
	if err != nil {
		return nil, &Error{Code: CodeUnavailable, Message: "the cluster could not count its nodes: " + err.Error()}
	}
	// The count comes from the Manager, so from the network: never size
	// anything by it. Node ids are 16 bits, so no cluster has more than
	// maxNodes nodes; a larger count is bogus and the call then waits for
	// answers that do not come, until its deadline.
	want := int(min(max(nodes, 0), maxNodes)) - 1
	if want <= 0 {
		return nil, nil
	}
	ch := make(chan ctlMsg, min(want, maxCallBuffer))
	t.callMu.Lock()
	t.callSeq++
	req.Req = t.callSeq
	t.calls[req.Req] = ch
	t.callMu.Unlock()
	defer func() {
		t.callMu.Lock()
		delete(t.calls, req.Req)
		t.callMu.Unlock()
	}()
	req.From = t.cfg.nodeID
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if err := t.link.Publish(ctx, controlTopic, b); err != nil {
		return nil, &Error{Code: CodeUnavailable, Message: "the cluster could not take the request: " + err.Error()}
	}
	answers := make([]ctlMsg, 0, min(want, 16))
	from := make(map[uint16]bool, min(want, 16))
	for len(answers) < want {
		select {
		case a := <-ch:
			if from[a.From] || a.From == t.cfg.nodeID {
				t.stats.badControl.Add(1) // one answer per node
				continue
			}
			from[a.From] = true
			answers = append(answers, a)
		case <-ctx.Done():
			return answers, &Error{Code: CodeUnavailable, Message: fmt.Sprintf("%d of %d other nodes did not answer: %v", want-len(answers), want, ctx.Err())}
		case <-t.ctx.Done():
			return answers, ErrClosed
		}
	}
	return answers, nil
}

// control handles a message on a system topic from another node. It runs
// on the Manager's delivery path, so it does not block: an unsubscribe is
// queued in order with the connection's requests and answered from there.
func (t *Tower) control(topic string, data []byte) {
	var m ctlMsg
	if err := json.Unmarshal(data, &m); err != nil {
		t.stats.badControl.Add(1)
		t.log.Warn("firetower: undecodable control message from another node", "topic", topic, "err", err)
		return
	}
	if m.Op == opAnswer {
		if topic != t.nodeTopic() {
			t.stats.badControl.Add(1)
			return
		}
		t.callMu.Lock()
		ch := t.calls[m.Req]
		t.callMu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default: // more answers than nodes counted: the call has what it waits for
			}
		} // else: an answer after its call ended (late, or for a previous process)
		return
	}
	if topic != controlTopic || m.From == t.cfg.nodeID {
		t.stats.badControl.Add(1)
		return
	}
	ans := ctlMsg{Op: opAnswer, Req: m.Req, From: t.cfg.nodeID}
	switch m.Op {
	case "disconnect":
		if c := t.conns.get(m.Conn); c != nil {
			ans.Found = true
			if err := c.Close(m.Code, m.Reason); err != nil && err != ErrClosed {
				ans.Err = asError(err, CodeBadRequest)
			}
		}
	case "disconnect_user":
		n, err := t.disconnectUserLocal(m.User, m.Code, m.Reason)
		ans.N = n
		if err != nil {
			ans.Err = asError(err, CodeBadRequest)
		}
	case "unsubscribe":
		c := t.conns.get(m.Conn)
		if c == nil {
			break
		}
		if e := validTopics(m.Topics); e != nil {
			ans.Err = e
			break
		}
		ans.Found = true
		c.post(item{kind: itemFunc, fn: func() {
			t.unsubscribe(c, &protocol.Request{Topics: m.Topics})
			t.answer(m.From, &ans)
		}})
		return
	case "topics":
		ans.Rows = capRows(t.localTopics(m.Query, m.Top), maxAnswerBytes)
	case "presence":
		if len(m.Topics) != 1 || validTopics(m.Topics) != nil {
			ans.Err = &Error{Code: CodeInvalidTopic, Message: "presence takes one valid topic"}
			break
		}
		ans.Conns = capJSON(t.localPresence(m.Topics[0], m.Limit), maxAnswerBytes, func(c ConnInfo) []string { return []string{c.ID, c.UserID} })
	case "presence_stats":
		if len(m.Topics) != 1 || validTopics(m.Topics) != nil {
			ans.Err = &Error{Code: CodeInvalidTopic, Message: "presence_stats takes one valid topic"}
			break
		}
		n, users := t.localPresenceStats(m.Topics[0])
		ans.N = int(n)
		ans.Users = capJSON(users, maxAnswerBytes, func(u string) []string { return []string{u} })
		ans.Partial = len(ans.Users) < len(users)
	default:
		ans.Err = &Error{Code: CodeUnknownType, Message: "unknown control operation " + strconv.Quote(m.Op)}
	}
	t.answer(m.From, &ans)
}

// maxAnswerBytes bounds a node's topic list in one answer, well under what
// every Manager carries in one message (NATS's default is 1 MiB).
const maxAnswerBytes = 256 << 10

// capJSON keeps the first items (the busiest, or the first listed) whose
// JSON, as strings measures it, fits in about max bytes.
func capJSON[T any](items []T, max int, strs func(T) []string) []T {
	size := 0
	for i, it := range items {
		size += 48 // numbers, names and punctuation
		for _, s := range strs(it) {
			q, _ := json.Marshal(s) // a string always marshals
			size += len(q)
		}
		if size > max {
			return items[:i]
		}
	}
	return items
}

func capRows(rows []TopicCount, max int) []TopicCount {
	return capJSON(rows, max, func(r TopicCount) []string { return []string{r.Topic} })
}

func (t *Tower) answer(to uint16, a *ctlMsg) {
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	topic := nodeTopicPrefix + strconv.FormatUint(uint64(to), 10)
	if err := t.link.Publish(t.ctx, topic, b); err != nil {
		t.stats.remotePublishFailed.Add(1)
	}
}

// Disconnect closes the connection with this id, on whichever node of the
// cluster it is, with a close code (1000 or 3000-4999) and a reason. It
// returns ErrNoConn when no node has it.
func (t *Tower) Disconnect(ctx context.Context, id string, code int, reason string) error {
	if c := t.conns.get(id); c != nil {
		return c.Close(code, reason)
	}
	if err := checkCloseCode(code); err != nil {
		return err
	}
	return foundResult(t.call(ctx, &ctlMsg{Op: "disconnect", Conn: id, Code: code, Reason: reason}))
}

// DisconnectUser closes every connection of a user in the cluster and
// returns how many it closed. When some nodes did not answer in time, it
// returns the count of those that did with an error (code unavailable).
func (t *Tower) DisconnectUser(ctx context.Context, userID string, code int, reason string) (int, error) {
	n, err := t.disconnectUserLocal(userID, code, reason)
	if err != nil {
		return 0, err
	}
	answers, err := t.call(ctx, &ctlMsg{Op: "disconnect_user", User: userID, Code: code, Reason: reason})
	for _, a := range answers {
		n += a.N
	}
	return n, err
}

// Unsubscribe removes topics from the subscriptions of the connection with
// this id, on whichever node it is, as if the client had asked
// (OnUnsubscribe runs, in order with the client's own requests). It
// returns once done, with ErrNoConn when no node has the connection, or
// with ctx's error.
func (t *Tower) Unsubscribe(ctx context.Context, id string, topics ...string) error {
	if e := validTopics(topics); e != nil {
		return e
	}
	if c := t.conns.get(id); c != nil {
		return t.unsubscribeLocal(ctx, c, topics)
	}
	return foundResult(t.call(ctx, &ctlMsg{Op: "unsubscribe", Conn: id, Topics: slices.Clone(topics)}))
}

// foundResult is the outcome of an operation on one connection: the answer
// of the node that has it, else the call's error, else ErrNoConn.
func foundResult(answers []ctlMsg, err error) error {
	for _, a := range answers {
		if a.Found {
			if a.Err != nil {
				return a.Err
			}
			return nil
		}
	}
	if err != nil {
		return err
	}
	return ErrNoConn
}

// ClusterTopics returns the topics of the whole cluster that contain query
// (case-insensitive; "" for all), most subscribers first, at most top of
// them (top <= 0: all). Each node contributes its own top matches (at
// most about 256 KiB of them), so a count is exact whenever the topic is
// among the matches every node that has it sent. System topics are left out. When
// some nodes did not answer in time it returns what it has with an error
// (code unavailable).
func (t *Tower) ClusterTopics(ctx context.Context, query string, top int) ([]TopicCount, error) {
	if t.state.Load() != 1 {
		return nil, ErrClosed
	}
	sum := map[string]int64{}
	for _, r := range t.localTopics(query, top) {
		sum[r.Topic] += r.Count
	}
	answers, err := t.call(ctx, &ctlMsg{Op: "topics", Query: query, Top: top})
	for _, a := range answers {
		for _, r := range a.Rows {
			if !IsSystemTopic(r.Topic) && r.Count > 0 {
				sum[r.Topic] += r.Count
			}
		}
	}
	rows := make([]TopicCount, 0, len(sum))
	for k, v := range sum {
		rows = append(rows, TopicCount{Topic: k, Count: v})
	}
	sortTopicCounts(rows)
	if top > 0 && len(rows) > top {
		rows = rows[:top]
	}
	return rows, err
}

// ConnInfo describes a connection for Presence.
type ConnInfo struct {
	ID     string `json:"id"`
	UserID string `json:"user_id,omitempty"`
	Node   uint16 `json:"node"`
}

// localPresence lists up to limit (all when limit <= 0) of this node's
// subscribers of topic.
func (t *Tower) localPresence(topic string, limit int) []ConnInfo {
	out := []ConnInfo{}
	subs := t.index.get(topic)
	if subs == nil {
		return out
	}
	for _, byCodec := range subs.byLoop {
		for _, blocks := range byCodec {
			for _, b := range blocks {
				for _, tc := range b {
					if limit > 0 && len(out) >= limit {
						return out
					}
					if c, ok := tc.Value.(*Conn); ok && c != nil {
						out = append(out, ConnInfo{ID: c.id, UserID: c.UserID(), Node: t.cfg.nodeID})
					}
				}
			}
		}
	}
	return out
}

// Presence lists the connections subscribed to topic in the whole cluster
// (their ids, user ids and nodes), at most limit of them (limit <= 0: all;
// each node sends at most about 256 KiB of them). The ids are what
// Disconnect and Unsubscribe take. When some nodes did not answer in time
// it returns what it has with an error (code unavailable).
func (t *Tower) Presence(ctx context.Context, topic string, limit int) ([]ConnInfo, error) {
	if t.state.Load() != 1 {
		return nil, ErrClosed
	}
	if e := validTopics([]string{topic}); e != nil {
		return nil, e
	}
	out := t.localPresence(topic, limit)
	answers, err := t.call(ctx, &ctlMsg{Op: "presence", Topics: []string{topic}, Limit: limit})
	for _, a := range answers {
		if a.Err != nil && err == nil {
			err = a.Err
		}
		out = append(out, a.Conns...)
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, err
}
