package source

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/pipeline"
)

// What the readers of a container's output (ContainerOutput, JournalOutput)
// have in common.

// drainSettle is how long a draining reader must find nothing new before it
// takes the end of what it reads for the end of the container's output.
const drainSettle = 300 * time.Millisecond

// clock is the readers' time: the wall clock, or a test's, which makes
// max_wait and the wake-up at a joined entry's deadline testable without
// sleeping.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// drainWake is what the scheduler tells a container's reader
// (ContainerOutput, JournalOutput): whether the container has stopped, and
// when to look for output now; and the reader's clock.
type drainWake struct {
	draining atomic.Bool
	wake     chan struct{}
	clock    clock
}

func newDrainWake() drainWake {
	return drainWake{wake: make(chan struct{}, 1), clock: wallClock{}}
}

// SetDraining tells the reader whether the container has stopped: a
// draining reader reads to the end of the log (for JournalOutput: of what
// the journal holds) and returns.
func (d *drainWake) SetDraining(v bool) {
	if d.draining.Swap(v) != v {
		d.Wake()
	}
}

// Wake makes the reader look at its log (or the journal) now rather than
// at its next poll.
func (d *drainWake) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// settled says whether a draining reader has found nothing new for
// drainSettle. idle is when it last found nothing new (zero: it just found
// something); the first look that finds nothing sets it to now.
func (d *drainWake) settled(idle *time.Time) bool {
	now := d.clock.Now()
	if idle.IsZero() {
		*idle = now
	}
	return d.draining.Load() && now.Sub(*idle) >= drainSettle
}

// handOver is the outcome of handing entries to the stream: nil once ctx
// has ended (what was not handed over is read again after a restart).
func handOver(ctx context.Context, t discovery.Target, err error) error {
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("container %s: %w", t.Name, err)
}

// outputLog is log with the fields that name t's container.
func outputLog(log *zap.Logger, t discovery.Target) *zap.Logger {
	return log.WithLazy(zap.String("container", t.Name), zap.String("id", t.ID[:min(12, len(t.ID))]), zap.String("tenant", t.Tenant))
}

// sourceMetadata is t's structured metadata (source_metadata: container,
// image, pod, host) in name order, so that every entry carries it alike.
func sourceMetadata(t discovery.Target) []pipeline.Label {
	if len(t.Metadata) == 0 {
		return nil
	}
	md := make([]pipeline.Label, 0, len(t.Metadata))
	for name, value := range t.Metadata {
		md = append(md, pipeline.Label{Name: name, Value: value})
	}
	slices.SortFunc(md, func(a, b pipeline.Label) int { return cmp.Compare(a.Name, b.Name) })
	return md
}
