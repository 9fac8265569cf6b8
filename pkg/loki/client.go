// Package loki delivers entries to Grafana Loki and acknowledges each one to
// its source only once Loki has answered 2xx, or once the entry has been given
// up for a counted, permanent reason. That is the whole point of not using
// loki-client-go, which drops batches and cannot acknowledge.
//
// Each tenant has one worker that pushes its batches strictly one after the
// other, so a source's acks arrive in the order its entries were consumed,
// while Consume keeps filling the tenant's next batch. Tenants push
// independently; they share only the byte bound that gives sources
// backpressure, and that bound is shared fairly (see admit), so a tenant
// that floods, or whose pushes Loki refuses, cannot take all of it.
//
// Shutdown is two-stage: Flush drains what was accepted until its deadline,
// then cancelling Run's ctx aborts whatever is still in flight, unacked.
package loki

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
)

// ErrClosed is returned by Consume once Flush has been called or Run has
// returned.
var ErrClosed = errors.New("loki: client takes no more entries (flushing or stopped)")

type runState int

const (
	stateIdle runState = iota
	stateRunning
	stateStopped
)

// Client batches entries per tenant and pushes them to Loki.
type Client struct {
	cfg      Config
	pushURL  string
	queryURL string // query_range, to learn whether a push whose answer was lost was stored
	log      *zap.Logger
	m        *metrics
	http     *http.Client
	spawn    chan struct{} // 1-buffered: tells Run that unstarted has tenants
	// started is when the client was made: only entries stamped before it
	// can have been sent by an earlier podtail (see skipStored).
	started time.Time
	// replayOff: Loki's query API did not answer a replay check; the rest
	// are sent unchecked.
	replayOff atomic.Bool

	workers sync.WaitGroup // tenant workers; Add only from Run's goroutine

	mu      sync.Mutex
	state   runState
	closed  bool          // Flush has stopped intake
	queued  int64         // bytes accepted and not yet acked or dropped
	pending int           // entries accepted and not yet acked or dropped; Flush waits for 0
	changed chan struct{} // closed and replaced when any field above changes (Flush waits on it)
	// lined holds the tenants with Consume calls waiting for room (each
	// tenant's in its line, oldest first); seq numbers the waiters.
	lined     []*tenant
	seq       uint64
	tenants   map[string]*tenant
	all       []*tenant // the values of tenants (never removed), for admit's walk: a slice, not a map iteration per entry
	unstarted []*tenant // tenants whose worker Run has yet to start
}

var _ pipeline.Consumer = (*Client)(nil)

// tenant is the per-tenant state. All fields but id and wake are guarded by
// Client.mu.
type tenant struct {
	id       string
	cur      *batch   // being filled; nil until the next entry arrives
	ready    []*batch // sealed, pushed oldest first
	inflight *batch   // taken by the worker and not yet settled
	queued   int64    // this tenant's share of Client.queued
	waiting  int      // Consume calls blocked for room
	wake     chan struct{}
	line     []*waiter // t's Consume calls waiting for room, oldest first
	// replayClean holds the streams whose replayed entries Loki was found
	// not to hold: later ones need no check. Only t's worker uses it.
	replayClean map[string]struct{}
}

// New checks cfg (after filling in defaults) and builds a Client. Nothing runs
// until Run is called; entries consumed before that wait in the queue.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	// A transport of our own (TLS, credentials, headers), so that Run can
	// close its idle connections without touching anybody else's.
	transport, err := cfg.transport(log)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		pushURL:  cfg.pushURL(),
		queryURL: cfg.queryRangeURL(),
		log:      log.With(zap.String("loki_url", cfg.pushURL())),
		m:        m,
		http:     &http.Client{Transport: transport},
		spawn:    make(chan struct{}, 1),
		started:  time.Now(),
		changed:  make(chan struct{}),
		tenants:  make(map[string]*tenant),
	}
	if reg != nil {
		if err := reg.Register(stateCollector{c}); err != nil {
			return nil, fmt.Errorf("loki: registering metrics: %w", err)
		}
	}
	return c, nil
}

// Consume takes ownership of e and queues it for its tenant. It blocks while
// the queue holds QueueBytes or more, returning ctx.Err() if ctx ends first,
// and returns ErrClosed after Flush or once Run has returned.
func (c *Client) Consume(ctx context.Context, e pipeline.Entry) error {
	_, err := c.ConsumeBatch(ctx, []pipeline.Entry{e})
	return err
}

// CopiesLines: entries are encoded into the batch as they are taken; no
// line or metadata string is kept (pipeline.LineCopier).
func (c *Client) CopiesLines() bool { return true }

// ConsumeBatch takes es in order, as Consume would one by one, under one
// lock while there is room (pipeline.BatchConsumer). It returns how many it
// took; when not all, the error Consume returned for the first one left.
// All entries of es must have the same tenant.
func (c *Client) ConsumeBatch(ctx context.Context, es []pipeline.Entry) (int, error) {
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

// Run starts a worker per tenant as tenants appear and blocks until ctx is
// cancelled. Cancelling is a hard stop: pushes in flight are aborted and their
// entries are never acknowledged, so their sources send them again next time.
// Use Flush first for a clean shutdown. Run returns nil once every worker has
// exited; it may be called only once.
func (c *Client) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.state != stateIdle {
		c.mu.Unlock()
		return errors.New("loki: Run called more than once")
	}
	c.state = stateRunning
	c.mu.Unlock()

	// The queue's idle memory goes back to the kernel as chunks come back;
	// this is for when none come back any more (the queue emptied).
	trim := time.NewTicker(chunkKeep)
	defer trim.Stop()
	for {
		c.startWorkers(ctx)
		select {
		case <-c.spawn:
		case <-trim.C:
			chunks.Trim()
		case <-ctx.Done():
			c.stop()
			return nil
		}
	}
}

// startWorkers starts a worker for each tenant that has appeared since the
// last call. Only Run's goroutine calls it, which keeps workers.Add from
// racing workers.Wait.
func (c *Client) startWorkers(ctx context.Context) {
	c.mu.Lock()
	start := c.unstarted
	c.unstarted = nil
	c.mu.Unlock()
	for _, t := range start {
		c.workers.Add(1)
		go c.work(ctx, t)
	}
}

// stop ends intake and waits for the workers, whose ctx has ended.
func (c *Client) stop() {
	c.mu.Lock()
	c.state = stateStopped
	c.wakeAll()   // Consume calls must notice
	c.broadcast() // and Flush
	c.mu.Unlock()
	c.workers.Wait()
	c.http.CloseIdleConnections()
}

// Flush is the first stage of shutdown: it stops intake, sends every queued
// batch at once (partial ones included) and waits until all have been
// acknowledged or dropped. If ctx ends first it returns an error wrapping
// ctx.Err(); Run's cancellation then does the rest. Run must be running for
// Flush to make progress.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.wakeAll() // Consume calls waiting for room must now fail
		for _, t := range c.tenants {
			poke(t.wake) // seal open batches without waiting for BatchWait
		}
	}
	for c.pending > 0 {
		if c.state == stateStopped {
			return fmt.Errorf("loki: flush: client stopped with %d entries undelivered", c.pending)
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			c.mu.Lock()
			return fmt.Errorf("loki: flush: %d entries undelivered: %w", c.pending, ctx.Err())
		case <-changed:
		}
		c.mu.Lock()
	}
	return nil
}

// Ready reports whether Run is running.
func (c *Client) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateRunning
}

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

// broadcast wakes everybody waiting on c.changed. c.mu must be held.
func (c *Client) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
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

// poke does a non-blocking send on a 1-buffered channel: one pending signal
// is as good as many.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
