package loki

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// Intake: Consume admits entries into the queue under its byte bound,
// which admit shares fairly between tenants. Consume calls that find no
// room wait in line, each tenant's in its own, and are woken one at a time
// as pushes settle and room appears (wakeOne). An admitted entry goes into
// its tenant's open batch (tenant.add), which is sealed for the tenant's
// worker (worker.go) once full or due.

// Consume takes es in order and queues them for their tenant, under one
// lock while there is room (pipeline.Consumer). Entries are encoded into
// the batch as they are taken: no line or metadata string of es is kept.
// It blocks while the queue holds QueueBytes or more, and returns how many
// it took; when not all, why it stopped: ctx.Err() if ctx ended first,
// ErrClosed after Flush or once Run has returned. All entries of es must
// have the same tenant.
func (c *Client) Consume(ctx context.Context, es []pipeline.Entry) (int, error) {
	if len(es) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	t := c.tenants[es[0].Tenant]
	if t == nil {
		t = &tenant{id: es[0].Tenant, wake: make(chan struct{}, 1)}
		c.tenants[es[0].Tenant] = t
		c.all = append(c.all, t)
		c.unstarted = append(c.unstarted, t)
		poke(c.spawn)
	}
	wake := false
	for i := range es {
		e := &es[i]
		if e.Tenant != t.id {
			c.mu.Unlock()
			return i, fmt.Errorf("loki: a batch of tenant %q holds an entry of tenant %q", t.id, e.Tenant)
		}
		for {
			if c.closed || c.state == stateStopped {
				c.mu.Unlock()
				return i, ErrClosed
			}
			if c.admit(t) {
				break
			}
			if wake {
				poke(t.wake)
				wake = false
			}
			c.seq++
			w := &waiter{t: t, ch: make(chan struct{}), seq: c.seq}
			if len(t.line) == 0 {
				c.lined = append(c.lined, t)
			}
			t.line = append(t.line, w)
			t.waiting++
			// t's sources wait for room: its open batch can only grow once
			// pushes empty the queue, so its worker sends it now rather than
			// after BatchWait (see next).
			if t.cur != nil {
				poke(t.wake)
			}
			c.m.queuedBytes.Set(float64(c.queued))
			c.mu.Unlock()
			select {
			case <-ctx.Done():
				c.mu.Lock()
				t.waiting--
				c.unwait(w)
				// If it was woken, the turn passes on; if not, one waiter fewer
				// may leave others a larger share.
				c.wakeOne()
				c.mu.Unlock()
				return i, ctx.Err()
			case <-w.ch:
			}
			c.mu.Lock()
			t.waiting--
		}
		if e.Replay && !c.replayable(e.Time) {
			e.Replay = false
		}
		size := queueCharge(e)
		c.queued += size
		t.queued += size
		c.pending++
		if t.add(e, int64(c.cfg.BatchSize)) {
			wake = true
		}
	}
	c.m.queuedBytes.Set(float64(c.queued))
	if wake {
		poke(t.wake)
	}
	if len(c.lined) > 0 {
		c.wakeOne() // room may be left for the next in line
	}
	c.mu.Unlock()
	return len(es), nil
}

// waiter is a Consume call waiting for room in the queue.
type waiter struct {
	t   *tenant
	ch  chan struct{} // closed when it may try again
	seq uint64        // order of arrival
}

// wakeOne wakes the longest-waiting Consume call that admit would let in
// now, if any. Waking one at a time, each woken call waking the next once
// it is in, lets in as many as there is room for. Waking every waiter on
// every acknowledgement instead had hundreds of readers (one per log
// directory) wake, find the queue full again and sleep, for each push
// settled; one line for all tenants had wakeOne walk past hundreds of
// waiters of tenants over their share. admit's answer depends on the
// tenant only, so the tenants in line are asked, and the oldest waiter of
// those let in goes. c.mu must be held.
func (c *Client) wakeOne() {
	if c.queued >= c.cfg.QueueBytes {
		return // admit refuses everybody
	}
	var best *tenant
	for _, t := range c.lined {
		if best != nil && t.line[0].seq > best.line[0].seq {
			continue
		}
		if c.admit(t) {
			best = t
		}
	}
	if best == nil {
		return
	}
	close(best.line[0].ch)
	c.dropWaiter(best, 0)
}

// dropWaiter takes t's i-th waiter out of its line. c.mu must be held.
func (c *Client) dropWaiter(t *tenant, i int) {
	t.line[i] = nil
	t.line = slices.Delete(t.line, i, i+1)
	if len(t.line) == 0 {
		t.line = nil
		c.lined = slices.DeleteFunc(c.lined, func(o *tenant) bool { return o == t })
	}
}

// wakeAll wakes every waiting Consume call (intake is closing). c.mu must
// be held.
func (c *Client) wakeAll() {
	for _, t := range c.lined {
		for _, w := range t.line {
			close(w.ch)
		}
		t.line = nil
	}
	c.lined = nil
}

// unwait takes w out of its line if it is still in it (not woken). c.mu
// must be held.
func (c *Client) unwait(w *waiter) {
	if i := slices.Index(w.t.line, w); i >= 0 {
		c.dropWaiter(w.t, i)
	}
}

// admit reports whether t may queue one more entry now. c.mu must be held.
//
// The bound is QueueBytes over all tenants, checked before adding rather than
// only when the entry fits: an entry larger than the free room (or than the
// whole bound) must not wait for a queue that cannot get emptier, so the bound
// is overshot by at most one entry.
//
// Within it, each busy tenant (one with bytes queued or a source waiting) is
// owed an equal share, counting one more tenant for whoever comes next. A
// tenant under its share is admitted while the queue has room; one over it
// only while a quarter of the queue is still free. So a tenant that floods, or
// whose pushes Loki keeps refusing, holds at most three quarters of the queue,
// and a quiet tenant finds room at once instead of waiting behind it. Without this, a tenant answered 429 for an hour would
// fill the queue and stop every other tenant's sources for that hour.
func (c *Client) admit(t *tenant) bool {
	limit := c.cfg.QueueBytes
	if c.queued >= limit {
		return false
	}
	if c.queued < limit-limit/4 {
		// Admitted whether t is under its share or not (see the end), and
		// counting busy tenants per entry showed in profiles.
		return true
	}
	busy := int64(0)
	for _, o := range c.all {
		if o == t || o.queued > 0 || o.waiting > 0 {
			busy++
		}
	}
	if t.queued < limit/(busy+1) {
		return true
	}
	return c.queued < limit-limit/4
}

// add appends e to the open batch, sealing that batch first if e would
// overflow it, and afterwards if e filled it. It reports whether the worker
// must look again: a new open batch needs its BatchWait timer, a sealed one
// needs sending.
func (t *tenant) add(e *pipeline.Entry, limit int64) (wake bool) {
	size := int64(e.Size())
	if t.cur != nil && t.cur.bytes+size > limit {
		t.seal()
		wake = true
	}
	if t.cur == nil {
		t.cur = newBatch(time.Now()) // only here: a clock read per entry showed in profiles
		wake = true
	}
	t.cur.add(e)
	if t.cur.bytes >= limit {
		t.seal()
		wake = true
	}
	return wake
}

// oldest is t's oldest unsettled batch, or nil. Batches are pushed in the
// order they were sealed, so it is the one in flight, else the first ready,
// else the open one.
func (t *tenant) oldest() *batch {
	switch {
	case t.inflight != nil:
		return t.inflight
	case len(t.ready) > 0:
		return t.ready[0]
	}
	return t.cur
}

func (t *tenant) seal() {
	t.ready = append(t.ready, t.cur)
	t.cur = nil
}
