package loki

import (
	"context"
	"time"
)

// The push loop: a worker per tenant (Run starts them) takes the tenant's
// sealed batches oldest first (next), pushes each until it is delivered or
// given up (push.go), and settles it: acknowledges its entries and gives
// their room in the queue back, which lets waiting Consume calls in.

// work pushes one tenant's batches, one at a time, until ctx ends.
func (c *Client) work(ctx context.Context, t *tenant) {
	defer c.workers.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		b, wait := c.next(t)
		if b != nil {
			c.push(ctx, t, b)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-timer.C:
		}
	}
}

// next seals t's open batch if it is due (or t's sources wait for room in
// the queue, which only pushes can make) and takes the oldest sealed batch.
// When there is none it returns how long until the open batch is due, or 0 if
// there is no open batch.
func (c *Client) next(t *tenant) (*batch, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.cur != nil {
		now := time.Now()
		due := t.cur.created.Add(c.cfg.BatchWait)
		if c.closed || !now.Before(due) || (t.waiting > 0 && len(t.ready) == 0) {
			t.seal()
		} else if len(t.ready) == 0 {
			return nil, due.Sub(now)
		}
	}
	if len(t.ready) == 0 {
		return nil, 0
	}
	b := t.ready[0]
	t.ready[0] = nil
	t.ready = t.ready[1:]
	t.inflight = b
	return b, 0
}

// settle acknowledges b's entries and releases their room in the queue. Acks
// come first so that a returning Flush implies every source has heard.
func (c *Client) settle(t *tenant, b *batch) {
	b.ackAll()
	b.release()
	c.mu.Lock()
	c.queued -= b.charge
	t.queued -= b.charge
	if t.inflight == b {
		t.inflight = nil
	}
	c.pending -= b.entries
	c.m.queuedBytes.Set(float64(c.queued))
	c.wakeOne()
	c.broadcast() // Flush waits for pending to reach 0
	c.mu.Unlock()
}
