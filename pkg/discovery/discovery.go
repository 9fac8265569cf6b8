// Package discovery finds the containers podtail collects from: it follows
// Podman's event stream, reconciles it with a periodic full list (events are
// backed by a log and can be missed), and publishes the full set of targets
// whenever it changes. When the Podman service goes away it reconnects with
// backoff; what is already being collected keeps flowing meanwhile.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/podman"
)

// API is the part of the Podman client discovery uses.
type API interface {
	Storage(ctx context.Context) (podman.Storage, error)
	List(ctx context.Context) ([]podman.Summary, error)
	Inspect(ctx context.Context, id string) (podman.Container, error)
	Pod(ctx context.Context, id string) (podman.Pod, error)
	Events(ctx context.Context, out chan<- podman.Event, subscribed func()) error
}

var _ API = (*podman.Client)(nil)

// Config tunes discovery.
type Config struct {
	ReconcileInterval time.Duration
	ReconnectBackoff  time.Duration // the longest wait between reconnects
	// Started is podtail's start; containers started before it are Existing.
	Started time.Time
}

// Discoverer publishes the set of targets.
type Discoverer struct {
	api       API
	mapper    *Mapper
	cfg       Config
	log       *zap.Logger
	connected atomic.Bool

	targets map[string]Target
	storage podman.Storage
	// seen remembers, for containers that are not targets, the state they
	// were skipped in, so reconcile does not inspect them again and again.
	seen map[string]podman.Summary
}

// New returns a Discoverer.
func New(api API, mapper *Mapper, cfg Config, log *zap.Logger) *Discoverer {
	return &Discoverer{
		api: api, mapper: mapper, cfg: cfg, log: log,
		targets: map[string]Target{},
		seen:    map[string]podman.Summary{},
	}
}

// Connected reports whether the event stream is live.
func (d *Discoverer) Connected() bool { return d.connected.Load() }

// Run publishes the full set of targets on up each time it changes, until ctx
// ends. up should have a buffer of one: an unread set is replaced by the
// newer one, so a slow reader sees the latest state, never a stale one.
// Run never closes up.
func (d *Discoverer) Run(ctx context.Context, up chan []Target) error {
	wait := 100 * time.Millisecond
	for {
		start := time.Now()
		err := d.session(ctx, up)
		d.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			wait = 100 * time.Millisecond
		}
		d.log.Warn("podman connection lost; collection of known containers goes on, reconnecting",
			zap.Error(err), zap.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, d.cfg.ReconnectBackoff)
	}
}

// session subscribes to events, then reconciles, then follows both until
// the stream or the service fails.
func (d *Discoverer) session(ctx context.Context, up chan []Target) error {
	ctx, cancel := context.WithCancel(ctx)
	events := make(chan podman.Event, 256)
	errc := make(chan error, 1)
	subscribed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		errc <- d.api.Events(ctx, events, func() { close(subscribed) })
	}()
	defer func() { cancel(); <-done }() // the stream's goroutine never outlives the session
	select {
	case <-subscribed:
	case err := <-errc:
		return fmt.Errorf("subscribe to events: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	if st, err := d.api.Storage(ctx); err == nil {
		d.storage = st
	} else {
		d.log.Warn("podman storage info unavailable; short-lived --rm containers may be missed", zap.Error(err))
	}
	if err := d.reconcile(ctx, up); err != nil {
		return err
	}
	d.connected.Store(true)
	d.log.Info("following podman events", zap.Int("targets", len(d.targets)))

	tick := time.NewTicker(d.cfg.ReconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			if err == nil {
				err = errors.New("event stream closed")
			}
			return err
		case ev := <-events:
			if err := d.handle(ctx, ev, up); err != nil {
				return err
			}
		case <-tick.C:
			if err := d.reconcile(ctx, up); err != nil {
				return err
			}
		}
	}
}

// handle applies one event. Only errors talking to Podman are returned.
func (d *Discoverer) handle(ctx context.Context, ev podman.Event, up chan []Target) error {
	d.log.Debug("event", zap.String("action", ev.Action), zap.String("container", ev.Name), zap.String("id", podman.Short(ev.ID)),
		zap.Duration("age", time.Since(ev.Time)))
	switch ev.Action {
	case "remove":
		delete(d.seen, ev.ID)
		if _, ok := d.targets[ev.ID]; ok {
			delete(d.targets, ev.ID)
			d.publish(up)
		}
		return nil
	case "create":
		// Publish from the event first: Podman delivers events late (~200 ms
		// measured) and inspect waits for a --rm container's removal, which
		// deletes its log. A reader started now holds the log open in time.
		if _, known := d.targets[ev.ID]; !known {
			if t, ok := d.provisional(ctx, ev); ok {
				d.targets[ev.ID] = t
				d.publish(up)
			}
		}
	case "init", "start", "restart", "died", "stop", "cleanup", "pause", "unpause", "rename":
	default:
		return nil
	}
	changed, err := d.refresh(ctx, ev.ID)
	if err != nil {
		return err
	}
	if changed {
		d.publish(up)
	}
	return nil
}

// provisional maps a container from its create event alone, with the
// service's default log driver (and its default k8s-file path); the inspect
// that follows corrects it (a container created with --log-driver or
// --log-opt path=) or removes it, and the scheduler moves the reader to
// what inspect says.
//
// A container in a pod is mapped with its pod's name and labels (a pod
// inspect does not wait on the container, and is cached for the pod's
// other containers): a reader keeps the labels of the target it was started
// for, so a target without them would ship the pod's lines under the wrong
// application or version. If the pod cannot be read, inspect decides.
func (d *Discoverer) provisional(ctx context.Context, ev podman.Event) (Target, bool) {
	c := podman.ContainerFromEvent(ev)
	if c.PodID != "" {
		p, err := d.api.Pod(ctx, c.PodID)
		if err != nil {
			d.log.Debug("pod not known at create; waiting for inspect", zap.String("container", c.Name), zap.Error(err))
			return Target{}, false
		}
		c.Pod, c.PodLabels = p.Name, p.Labels
	}
	switch d.storage.LogDriver {
	case podman.LogDriverFile:
		if c.LogPath = d.storage.DefaultLogPath(ev.ID); c.LogPath == "" {
			return Target{}, false
		}
	case podman.LogDriverJournal:
	default:
		return Target{}, false
	}
	c.LogDriver = d.storage.LogDriver
	t, err := d.mapper.Map(c)
	return t, err == nil
}

// refresh inspects one container and updates the target set.
func (d *Discoverer) refresh(ctx context.Context, id string) (changed bool, err error) {
	c, err := d.api.Inspect(ctx, id)
	if errors.Is(err, podman.ErrNotFound) {
		_, had := d.targets[id]
		delete(d.targets, id)
		delete(d.seen, id)
		return had, nil
	}
	if err != nil {
		return false, err
	}
	t, err := d.mapper.Map(c)
	if err != nil {
		d.seen[id] = podman.Summary{ID: id, State: c.State, StartedAt: podman.UnixOrZero(c.StartedAt)}
		if _, had := d.targets[id]; had {
			delete(d.targets, id)
			return true, nil
		}
		d.log.Debug("container not collected", zap.String("container", c.Name), zap.Error(err))
		return false, nil
	}
	t.Existing = !c.StartedAt.IsZero() && c.StartedAt.Before(d.cfg.Started)
	old, had := d.targets[id]
	d.targets[id] = t
	delete(d.seen, id)
	return !had || !old.Equal(t), nil
}

// reconcile lists all containers and brings the target set in line with it.
func (d *Discoverer) reconcile(ctx context.Context, up chan []Target) error {
	list, err := d.api.List(ctx)
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(list))
	for _, s := range list {
		s.StartedAt = max(s.StartedAt, 0) // never started: Podman lists the zero time's negative seconds
		present[s.ID] = true
		if t, ok := d.targets[s.ID]; ok && t.StartedAt/int64(time.Second) == s.StartedAt && t.Running == podman.Alive(s.State) {
			continue
		}
		if old, ok := d.seen[s.ID]; ok && old.State == s.State && old.StartedAt == s.StartedAt {
			continue
		}
		if _, err := d.refresh(ctx, s.ID); err != nil {
			return err
		}
	}
	maps.DeleteFunc(d.targets, func(id string, _ Target) bool { return !present[id] })
	maps.DeleteFunc(d.seen, func(id string, _ podman.Summary) bool { return !present[id] })
	// Always publish after a reconcile: the first one is the full state the
	// reader waits for, and later ones are cheap.
	d.publish(up)
	return nil
}

// publish replaces any unread set on up with the current one.
func (d *Discoverer) publish(up chan []Target) {
	set := make([]Target, 0, len(d.targets))
	for _, t := range d.targets {
		set = append(set, t)
	}
	sort.Slice(set, func(i, j int) bool { return set[i].ID < set[j].ID })
	replace(up, set)
}

// replace puts set on up (buffer one), first taking off a set nobody has
// read yet: the reader always gets the latest. Only one goroutine sends on
// up, so the send cannot block.
func replace(up chan []Target, set []Target) {
	select {
	case <-up:
	default:
	}
	up <- set
}
