package source

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
)

// What the readers of a container's output (ContainerOutput, JournalOutput)
// have in common.

// drainSettle is how long a draining reader must find nothing new before it
// takes the end of what it reads for the end of the container's output.
const drainSettle = 300 * time.Millisecond

// drainWake is what the scheduler tells a container's reader
// (ContainerOutput, JournalOutput): whether the container has stopped, and
// when to look for output now. Make wake with room for one wake-up.
type drainWake struct {
	draining atomic.Bool
	wake     chan struct{}
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
	if idle.IsZero() {
		*idle = time.Now()
	}
	return d.draining.Load() && time.Since(*idle) >= drainSettle
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
