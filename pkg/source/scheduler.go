package source

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// forgetAfter is how long the position of a container that no longer exists
// is kept: long enough for its last lines to be delivered.
const forgetAfter = time.Hour

// Scheduler runs one reader per target, each under its own child context,
// and reconciles them with the target set discovery publishes.
//
// A reader of a stopped container reads to the end of its log and ends; it
// is started again only if the container starts again (a new StartedAt).
// Positions are never dropped when a container stops (the peers' bug that
// re-sends a whole history on restart), only an hour after it is removed.
type Scheduler struct {
	ctx          context.Context
	store        *positions.Store
	next         pipeline.Consumer
	existingFrom string
	metrics      *Metrics
	log          *zap.Logger

	mu       sync.Mutex
	wg       sync.WaitGroup
	running  map[string]*run
	finished map[string]int64 // container ID -> StartedAt of the generation read to its end
}

type run struct {
	src       *ContainerOutput
	startedAt int64
	cancel    context.CancelFunc
}

// NewScheduler returns a scheduler whose readers live under ctx.
func NewScheduler(ctx context.Context, store *positions.Store, next pipeline.Consumer, existingFrom string, m *Metrics, log *zap.Logger) *Scheduler {
	return &Scheduler{
		ctx: ctx, store: store, next: next, existingFrom: existingFrom, metrics: m, log: log,
		running:  map[string]*run{},
		finished: map[string]int64{},
	}
}

// Sync brings the readers in line with targets, the complete current set.
func (s *Scheduler) Sync(targets []discovery.Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]bool, len(targets))
	for _, t := range targets {
		want[t.ID] = true
		if r, ok := s.running[t.ID]; ok {
			r.startedAt = t.StartedAt // a restart the reader goes on with
			r.src.SetDraining(!t.Running)
			continue
		}
		if !t.Running && s.finished[t.ID] == t.StartedAt {
			continue // this run of the container was read to its end
		}
		s.start(t)
	}
	for id, r := range s.running {
		if !want[id] {
			r.src.SetDraining(true) // removed: finish what the open file holds
		}
	}
	for id := range s.finished {
		if !want[id] {
			delete(s.finished, id)
		}
	}
	s.store.Forget(forgetAfter, func(key string) bool {
		id, ok := strings.CutPrefix(key, Key(""))
		return !ok || want[id]
	})
}

func (s *Scheduler) start(t discovery.Target) {
	fromEnd := t.Existing && s.existingFrom == "end"
	src := NewContainerOutput(t, s.store, nil, s.next, fromEnd, s.metrics, s.log)
	src.SetDraining(!t.Running)
	ctx, cancel := context.WithCancel(s.ctx)
	r := &run{src: src, startedAt: t.StartedAt, cancel: cancel}
	s.running[t.ID] = r
	s.metrics.targets.Inc()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		defer s.metrics.targets.Dec()
		if err := src.Run(ctx); err != nil {
			s.log.Error("container output reader stopped", zap.String("container", t.Name), zap.Error(err))
		}
		s.mu.Lock()
		if s.running[t.ID] == r {
			delete(s.running, t.ID)
			if ctx.Err() == nil {
				s.finished[t.ID] = r.startedAt
			}
		}
		s.mu.Unlock()
	}()
}

// Wait blocks until every reader has returned (after ctx is cancelled).
func (s *Scheduler) Wait() { s.wg.Wait() }
