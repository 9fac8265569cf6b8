package source

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/source/file"
)

// Readers waiting for output hold no goroutine (park.go): 200 containers
// cost what 200 files do. A write inotify reports wakes its reader: on a
// clock that stands still no poll ever comes.
func TestWaitingReadersHoldNoGoroutine(t *testing.T) {
	const n = 200
	watch, err := file.NewWatcher(zap.NewNop())
	if err != nil {
		t.Skipf("no inotify here: %v", err)
	}
	t.Cleanup(func() { watch.Close() })
	base := runtime.NumGoroutine()

	store := openStore(t, t.TempDir())
	s := newSink(t)
	logs := make([]*logFile, n)
	clk := newFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, n)
	for i := range logs {
		logs[i] = newLogFile(t, cri(int64(i), Stdout, "F", fmt.Sprintf("first %d", i)))
		tg := testTarget(logs[i].path)
		tg.ID = fmt.Sprintf("%064d", i)
		co := newReader(t, tg, store, s.consumer(), false, nil)
		co.watcher, co.clock = watch, clk
		co.Start(ctx, func(err error) { ended <- err })
	}
	t.Cleanup(func() {
		cancel()
		for range n {
			if err := <-ended; err != nil {
				t.Errorf("reader ended with %v", err)
			}
		}
	})
	s.wait(n)
	// Once each has found the end of its log, none holds a goroutine. (A
	// few may be stepping at any time: their poll's first steps are short.)
	eventually(t, "the readers to park", func() bool { return runtime.NumGoroutine() <= base+n/20 })

	// Quiet for a while: each reader's poll stretches (pollMin doubling,
	// then up to watchedPoll as the log stays quiet), and a change is no
	// longer left to a look due soon (Nudge).
	for range 8 {
		clk.advance(time.Second)
		eventually(t, "the readers to park again", func() bool { return runtime.NumGoroutine() <= base+n/20 })
	}
	eventually(t, "every reader's next look a second or more away", func() bool {
		clk.mu.Lock()
		defer clk.mu.Unlock()
		soon := 0
		for _, tm := range clk.timers {
			if tm.active && tm.at.Sub(clk.now) < time.Second {
				soon++
			}
		}
		return soon == 0
	})

	// Written to while parked: woken by inotify, as the poll never comes.
	for _, i := range []int{0, 57, 199} {
		logs[i].append(cri(int64(1000+i), Stdout, "F", fmt.Sprintf("later %d", i)))
	}
	got := lines(s.wait(n + 3)[n:])
	slices.Sort(got)
	if want := []string{"later 0", "later 199", "later 57"}; !slices.Equal(got, want) {
		t.Fatalf("lines written while parked = %q, want %q", got, want)
	}
}

// Without inotify a reader polls, from pollMin up to pollMax, and still
// finds what is written.
func TestWaitingReaderPollsWithoutAWatcher(t *testing.T) {
	lf := newLogFile(t, cri(0, Stdout, "F", "one"))
	s := newSink(t)
	co := newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil)
	runReader(t, co)
	s.wait(1)
	lf.append(cri(1, Stdout, "F", "two"))
	if got := lines(s.wait(2)); !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("lines = %q", got)
	}
	if co.watched {
		t.Error("a reader without a watcher says it is watched")
	}
}

// A change reported while the reader's next look is due within nudgeGap is
// left to that look: a log written a line at a time is read in batches.
// One due later wakes the reader at once.
func TestNudgeLeavesAChangeToALookDueSoon(t *testing.T) {
	clk := newFakeClock()
	var p parking
	p.init()
	p.clock = clk
	var steps atomic.Int32
	after := make(chan time.Duration, 10)
	after <- pollMin
	p.start(context.Background(), func(context.Context, time.Time) next {
		steps.Add(1)
		return next{after: <-after}
	}, func(error) {})
	eventually(t, "the first step and the reader parked", func() bool { return steps.Load() == 1 && p.word.Load()&parkStepping == 0 })

	for range 100 {
		p.Nudge()
	}
	if got := steps.Load(); got != 1 {
		t.Fatalf("steps after 100 nudges with a look due in %v = %d, want 1 (left to the look)", pollMin, got)
	}
	after <- time.Minute
	clk.advance(pollMin)
	eventually(t, "the look at the poll", func() bool { return steps.Load() == 2 && p.word.Load()&parkStepping == 0 })

	after <- time.Minute
	p.Nudge()
	eventually(t, "a step at the nudge, the next look a minute away", func() bool { return steps.Load() == 3 })
}

// A reader that had found nothing for a while still waits settle after
// it is told the container stopped: the container's last lines come after
// Podman says it died (the soak lost them when the wait counted from the
// last look that found nothing). Told again, the wait does not restart.
func TestSettledCountsFromTheDrain(t *testing.T) {
	clk := newFakeClock()
	var p parking
	p.init()
	p.clock = clk
	idle := clk.Now()
	clk.advance(time.Minute)
	if p.settled(clk.Now(), &idle, drainSettle) {
		t.Fatal("settled before draining")
	}
	p.SetDraining(true)
	clk.advance(drainSettle / 2)
	if p.settled(clk.Now(), &idle, drainSettle) {
		t.Fatalf("settled %v after the drain began, quiet for a minute before: want %v after it", drainSettle/2, drainSettle)
	}
	p.SetDraining(true) // every Sync says so again
	clk.advance(drainSettle / 2)
	if !p.settled(clk.Now(), &idle, drainSettle) {
		t.Fatalf("not settled %v after the drain began", drainSettle)
	}
}
