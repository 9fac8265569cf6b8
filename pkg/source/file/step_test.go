package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
	"github.com/podtail/podtail/pkg/source/positions"
)

// stepper drives a Dir's steps itself on a fake clock: no goroutine, no
// inotify, no timer. What a step does is all that happens, so a test
// asserts on it without waiting for anything.
type stepper struct {
	t     *testing.T
	d     *Dir
	clock *clockwork.FakeClock
	m     *Metrics
}

func newStepper(t *testing.T, dir string, store *positions.Store, out pipeline.Sink, log *zap.Logger, opts ...func(*Config)) *stepper {
	t.Helper()
	cfg := testConfig(dir, opts...)
	if store == nil {
		var err error
		if store, err = positions.Open(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	if log == nil {
		log = testLogger()
	}
	m := NewMetrics(prometheus.NewRegistry(), nil, nil)
	d := NewDir(cfg, store, out, m, log)
	fc := clockwork.NewFakeClockAt(time.Now())
	d.clock = fc
	ctx, cancel := context.WithCancel(context.Background())
	d.ctx = ctx
	t.Cleanup(func() {
		cancel()
		d.dropSlot()
		d.closeAll()
	})
	return &stepper{t: t, d: d, clock: fc, m: m}
}

// step takes one step, woken for why (and whatever woke the tailer since).
func (s *stepper) step(why uint32) wait {
	return s.d.step(s.clock.Now(), why|s.d.w.take(reasons))
}

// settle steps, listing first, until a step asks to wait, and returns that
// wait.
func (s *stepper) settle() wait {
	s.t.Helper()
	why := relist
	for range 10000 {
		w := s.step(why)
		if !w.again {
			return w
		}
		why = woken
	}
	s.t.Fatal("the tailer never settled")
	return wait{}
}

// steps takes n steps, listing first: a tailer held back by its sink never
// settles (each wait on the sink ends in a relist and another cycle).
func (s *stepper) steps(n int) {
	why := relist
	for range n {
		if w := s.step(why); w.end {
			s.t.Fatalf("the tailer ended: %v", w.err)
		}
		why = woken
	}
}

// valve is a sink that, while shut, refuses what it is offered the way the
// Loki client does while its queue is full: it waits until the caller's
// context ends. A stepped tailer has no timer to end that wait, so the valve
// plays its part (end: the Dir's onTimer, as if the held-back second had
// passed).
type valve struct {
	next    *sink
	shut    atomic.Bool
	refused atomic.Int64
	end     func()
}

// heldBack is a stepper on dir whose sink, a shut valve in front of s,
// holds its lines back.
func heldBack(t *testing.T, dir string, s *sink) (*stepper, *valve) {
	v := &valve{next: s}
	v.shut.Store(true)
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: v}, nil)
	v.end = st.d.onTimer
	return st, v
}

func (v *valve) Consume(ctx context.Context, es []pipeline.Entry) (int, error) {
	if v.shut.Load() {
		v.refused.Add(1)
		if v.end != nil {
			v.end()
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return v.next.Consume(ctx, es)
}

// A step says what comes next as a plain value: step again while it reads,
// then the poll; a draining tailer ends once idle for drainSettle on its
// clock, not before.
func TestStepWaits(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "app.log"), numbered(1, 3), 0o644))
	s := newSink()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil)
	if w := st.step(relist); !w.again {
		t.Fatalf("first step (opens and reads a file): %+v, want again", w)
	}
	w := st.settle()
	if w != (wait{after: 20 * time.Millisecond}) {
		t.Fatalf("idle: %+v, want the poll", w)
	}
	exactlyOnce(t, s, 1, 3)
	st.d.w.set(draining)
	if w := st.step(woken); w.end {
		t.Fatal("a draining tailer ended before drainSettle")
	}
	st.clock.Advance(drainSettle)
	if w := st.step(woken); !w.end || w.err != nil {
		t.Fatalf("draining, idle for drainSettle: %+v, want the end", w)
	}
}

// With the tenant's one read slot taken, a step opens what it lists but
// does not read: it asks to queue for a slot (waiting at most the relist
// period). A step woken with the slot granted reads, then gives it back.
func TestStepQueuesForReadSlot(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "app.log"), numbered(1, 3), 0o644))
	slots := NewReadSlots(1)
	if !slots.tryAcquire("t") {
		t.Fatal("no slot")
	}
	s := newSink()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil, func(c *Config) { c.ReadSlots = slots })
	w := st.step(relist)
	if !w.slot || w.after != readSlice { // not watched: the relist period is readSlice
		t.Fatalf("no slot free: %+v, want to queue", w)
	}
	if s.total() != 0 || testutil.ToFloat64(st.m.open) != 1 {
		t.Fatalf("%d lines, %v open; want the file open and unread", s.total(), testutil.ToFloat64(st.m.open))
	}
	st.d.waiter = &slotWaiter{grant: func() { st.d.kick(granted) }} // as Start makes it
	st.d.w.set(queued)
	slots.wait("t", st.d.waiter) // queued, as the trampoline does
	slots.release("t")           // the slot changes hands
	if !st.d.w.has(granted) {
		t.Fatal("the slot given back did not go to the queued tailer")
	}
	st.settle()
	if st.d.w.has(queued) {
		t.Fatal("still queued after the grant was taken")
	}
	exactlyOnce(t, s, 1, 3)
	if slots.tryAcquire("t") {
		slots.release("t")
	} else {
		t.Fatal("the slot was not given back after the read")
	}
}

// Pushed back while its file is renamed away: the lines the sink refused
// stay separate entries (a tailer once shipped its whole buffer of them as
// one "last line", which Loki refuses), each once, in order.
func TestPushedBackAcrossRename(t *testing.T) {
	dir := t.TempDir()
	s := newSink()
	st, v := heldBack(t, dir, s)
	path := filepath.Join(dir, "app.log")
	must(t, os.WriteFile(path, numbered(1, 2000), 0o644))
	st.steps(3)
	if v.refused.Load() == 0 || s.total() != 0 {
		t.Fatalf("refused %d, passed %d: want the lines read and held back", v.refused.Load(), s.total())
	}
	must(t, os.Rename(path, filepath.Join(dir, "app-1.log")))
	must(t, os.WriteFile(path, numbered(2001, 4000), 0o644))
	st.steps(3)
	v.shut.Store(false)
	st.settle()
	exactlyOnce(t, s, 1, 4000)
}

// With a multiline joiner, a Go panic between zap lines is one entry, and
// the last entry is flushed once max_wait has passed on the tailer's clock,
// although nothing follows it.
func TestMultilineGoPanic(t *testing.T) {
	dir := t.TempDir()
	s := newSink()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil, func(c *Config) {
		c.Stages = func(string) (*pipeline.Pipeline, *pipeline.Multiline) {
			m, err := stage.NewMultilineFromSpec(map[string]any{"first_line": `^(\{|panic:)`, "max_wait": "200ms"})
			if err != nil {
				t.Fatal(err)
			}
			return nil, m
		}
	})
	content := `{"level":"info","msg":"before"}
panic: boom
goroutine 1 [running]:
main.main()
	/app/main.go:10 +0x1d
{"level":"info","msg":"after"}
`
	must(t, os.WriteFile(filepath.Join(dir, "app.log"), []byte(content), 0o644))
	st.settle()
	if n := s.total(); n != 2 {
		t.Fatalf("%d entries before max_wait, want 2 (the last one still open)", n)
	}
	st.clock.Advance(199 * time.Millisecond)
	st.settle()
	if n := s.total(); n != 2 {
		t.Fatalf("%d entries before max_wait, want 2", n)
	}
	st.clock.Advance(time.Millisecond)
	st.settle()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) != 3 || !strings.HasPrefix(s.lines[1], "panic: boom\ngoroutine 1") || !strings.HasSuffix(s.lines[1], "+0x1d") {
		t.Fatalf("entries: %q", s.lines)
	}
}

// The open-file bound holds: with one slot and two live files, only the
// older is read until it is deleted; then the second is read in full.
func TestOpenFileBound(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.log"), []byte("a1\na2\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "b.log"), []byte("b1\nb2\n"), 0o644))
	older := time.Now().Add(-time.Minute)
	must(t, os.Chtimes(filepath.Join(dir, "a.log"), older, older)) // a is older: read first
	s := newSink()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil, func(c *Config) { c.OpenFiles = NewOpenFiles(1) })
	for range 5 {
		st.settle()
	}
	if n := s.total(); n != 2 || testutil.ToFloat64(st.m.open) != 1 {
		t.Fatalf("%d lines, %v files open; want a's 2 lines and 1 file", n, testutil.ToFloat64(st.m.open))
	}
	must(t, os.Remove(filepath.Join(dir, "a.log")))
	st.settle() // a is finished (deleted)
	st.settle() // b is opened
	if n := s.total(); n != 4 {
		t.Fatalf("%d lines after a was deleted, want 4", n)
	}
}
