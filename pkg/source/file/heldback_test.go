package file

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
	"github.com/podtail/podtail/pkg/source/positions"
)

// Held back by the sink, the tailer still opens a file that a rotation
// creates, at once (inotify's create, not the held-back relist of a
// second): the new file is renamed away and deleted 200 ms later, as a fast
// rotator deletes its backups, and its lines still arrive, through the
// descriptor opened in time. Every line once.
func TestHeldBackTailerOpensRotatedFileAtOnce(t *testing.T) {
	dir := t.TempDir()
	store, _ := positions.Open(t.TempDir())
	s := newSink()
	g := shutGate(s, "")
	m := NewMetrics(prometheus.NewRegistry(), nil, nil)
	r := startDir(t, dir, store, g, m)
	path := filepath.Join(dir, "app.log")
	_ = os.WriteFile(path, numbered(1, 2000), 0o644)
	waitFor(t, 5*time.Second, "the lines read and held back", func() bool { return g.refused.Load() > 0 })
	_ = os.Rename(path, filepath.Join(dir, "app-1.log"))
	_ = os.WriteFile(path, numbered(2001, 4000), 0o644)
	// Within 200 ms, well before the held-back relist (a second).
	waitFor(t, 200*time.Millisecond, "the new file opened", func() bool {
		return testutil.ToFloat64(m.opened.WithLabelValues("t", "plain")) == 2
	})
	_ = os.Rename(path, filepath.Join(dir, "app-2.log"))
	_ = os.Remove(filepath.Join(dir, "app-2.log"))
	if s.total() != 0 {
		t.Fatalf("%d lines passed the closed gate", s.total())
	}
	g.shut.Store(false)
	waitFor(t, 10*time.Second, "4000 lines", func() bool { return s.total() >= 4000 })
	r.stop(t)
	exactlyOnce(t, s, 1, 4000)
}

// acquire (for tests) waits for one of tenant's slots, or until ctx ends; release
// gives it back.
func (rs *ReadSlots) acquire(ctx context.Context, tenant string) (release func(), err error) {
	got := make(chan struct{}, 1)
	w := &slotWaiter{grant: func() { got <- struct{}{} }}
	rs.wait(tenant, w)
	select {
	case <-got:
	case <-ctx.Done():
		if rs.cancel(tenant, w) {
			return nil, ctx.Err()
		}
		<-got // granted meanwhile
	}
	return func() { rs.release(tenant) }, nil
}

// A tenant's read slots: a tenant with all of its slots taken waits (until
// its context ends), another tenant does not, and a slot given back is
// taken again.
func TestReadSlotsPerTenant(t *testing.T) {
	rs := NewReadSlots(1)
	releaseA, err := rs.acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := rs.acquire(ctx, "a"); err == nil {
		t.Fatal("a second slot of tenant a with n=1")
	}
	releaseB, err := rs.acquire(context.Background(), "b")
	if err != nil {
		t.Fatalf("tenant b waited on tenant a's slot: %v", err)
	}
	releaseB()
	releaseA()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	release, err := rs.acquire(ctx2, "a")
	if err != nil {
		t.Fatalf("a's slot not given back: %v", err)
	}
	release()
	var none *ReadSlots
	if release, err := none.acquire(context.Background(), "a"); err != nil {
		t.Fatal(err)
	} else {
		release()
	}
}

// Two directories of one tenant with one read slot, both held back by the
// sink: the one waiting for the slot still opens a file that a rotation
// creates and deletes within 200 ms (the change ends its wait, as it ends a
// wait on the sink), and once the sink takes lines every line of both
// arrives once.
func TestReadSlotWaitStillOpensRotatedFile(t *testing.T) {
	store, _ := positions.Open(t.TempDir())
	rs := NewReadSlots(1)
	dirA, dirB := t.TempDir(), t.TempDir()
	sA, sB := newSink(), newSink()
	gA, gB := shutGate(sA, ""), shutGate(sB, "")
	_ = os.WriteFile(filepath.Join(dirA, "app.log"), numbered(1, 2000), 0o644)
	rA := startDir(t, dirA, store, gA, NewMetrics(prometheus.NewRegistry(), nil, nil), func(c *Config) { c.ReadSlots = rs })
	waitFor(t, 5*time.Second, "A read, held back, holding the slot", func() bool { return gA.refused.Load() > 0 })
	mB := NewMetrics(prometheus.NewRegistry(), nil, nil)
	rB := startDir(t, dirB, store, gB, mB, func(c *Config) { c.ReadSlots = rs })
	opened := func() float64 { return testutil.ToFloat64(mB.opened.WithLabelValues("t", "plain")) }
	path := filepath.Join(dirB, "app.log")
	_ = os.WriteFile(path, numbered(1, 2000), 0o644)
	waitFor(t, 5*time.Second, "B's file opened", func() bool { return opened() == 1 })
	_ = os.Rename(path, filepath.Join(dirB, "app-1.log"))
	_ = os.WriteFile(path, numbered(2001, 4000), 0o644)
	// Within 200 ms, well before the held-back relist (a second).
	waitFor(t, 200*time.Millisecond, "B's new file opened", func() bool { return opened() == 2 })
	_ = os.Rename(path, filepath.Join(dirB, "app-2.log"))
	_ = os.Remove(filepath.Join(dirB, "app-2.log"))
	if n := sA.total() + sB.total(); n != 0 {
		t.Fatalf("%d lines passed the closed gate", n)
	}
	if gB.refused.Load() != 0 {
		t.Fatal("B read without a slot")
	}
	gA.shut.Store(false)
	gB.shut.Store(false)
	waitFor(t, 15*time.Second, "all lines", func() bool { return sA.total() >= 2000 && sB.total() >= 4000 })
	rA.stop(t)
	rB.stop(t)
	exactlyOnce(t, sA, 1, 2000)
	exactlyOnce(t, sB, 1, 4000)
}

// A file renamed away while its last joined (multi-line) entry is still
// open: finishing the file completes that entry, and if the sink does not
// take it then, the file stays open until it does. (Finishing ignored the
// refusal and closed the file: the entry was lost.)
func TestRenamedFileJoinedEntryPushedBack(t *testing.T) {
	dir := t.TempDir()
	store, _ := positions.Open(t.TempDir())
	s := newSink()
	g := shutGate(s, "panic")
	r := startDir(t, dir, store, g,
		NewMetrics(prometheus.NewRegistry(), nil, nil), func(c *Config) {
			c.Stages = func(string) (*pipeline.Pipeline, *pipeline.Multiline) {
				m, err := stage.NewMultilineFromSpec(map[string]any{"first_line": `^(\{|panic:)`, "max_wait": "30s"})
				if err != nil {
					t.Fatal(err)
				}
				return nil, m
			}
		})
	path := filepath.Join(dir, "app.log")
	_ = os.WriteFile(path, append(numbered(1, 50), "panic: boom\n\tmain.go:3\n"...), 0o644)
	waitFor(t, 5*time.Second, "49 entries", func() bool { return s.total() >= 49 })
	_ = os.Rename(path, filepath.Join(dir, "app-1.log"))
	waitFor(t, 5*time.Second, "the panic, completed by the rename, refused", func() bool { return g.refused.Load() > 0 })
	g.shut.Store(false)
	waitFor(t, 10*time.Second, "the panic", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.ContainsFunc(s.lines, func(l string) bool { return strings.HasPrefix(l, "panic: boom\n\tmain.go:3") })
	})
	r.stop(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) != 51 {
		t.Fatalf("%d entries, want 51: %q", len(s.lines), s.lines)
	}
}
