package firetower

import "sync"

// workers runs connections' inboxes on a fixed pool of goroutines. A
// connection is in the queue at most once (Conn.busy), so its items run
// in order, one at a time; the queue is bounded by the number of connections.
type workers struct {
	mu     sync.Mutex
	cond   sync.Cond
	q      fifo[*Conn]
	closed bool
	wg     sync.WaitGroup
}

// batch is how many items one turn drains from an inbox before the
// connection goes to the back of the queue, so a flooding client cannot
// starve the others.
const batch = 32

func (w *workers) start(n int, drain func(c *Conn, max int) bool) {
	w.cond.L = &w.mu
	w.wg.Add(n)
	for range n {
		go func() {
			defer w.wg.Done()
			for {
				c := w.pop()
				if c == nil {
					return
				}
				if drain(c, batch) {
					w.push(c) // more left: back of the queue
				}
			}
		}()
	}
}

func (w *workers) push(c *Conn) {
	w.mu.Lock()
	w.q.push(c)
	w.mu.Unlock()
	w.cond.Signal()
}

func (w *workers) pop() *Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if c, ok := w.q.pop(); ok {
			return c
		}
		if w.closed {
			return nil
		}
		w.cond.Wait()
	}
}

// stop lets the workers finish what is queued and waits for them.
func (w *workers) stop() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cond.Broadcast()
	w.wg.Wait()
}
