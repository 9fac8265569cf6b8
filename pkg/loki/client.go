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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
)

// The Client and its tenants' state, and its life cycle: New, Run (which
// starts the tenants' workers), Flush and the hard stop. Intake (Consume
// and the queue bound) is in queue.go, batching in batch.go, the push loop
// in worker.go and push.go.

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
	// book records pushes' outcomes for Stats (stats.go).
	book book

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
	m.queueLimit.Set(float64(cfg.QueueBytes))
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

// broadcast wakes everybody waiting on c.changed. c.mu must be held.
func (c *Client) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// poke does a non-blocking send on a 1-buffered channel: one pending signal
// is as good as many.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
