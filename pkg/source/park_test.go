package source

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"

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
