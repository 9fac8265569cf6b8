package source

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// A reader started before conmon created the log waits for the file and
// then reads it from the start.
func TestContainerOutputWaitsForLog(t *testing.T) {
	lf := &logFile{t: t, path: t.TempDir() + "/later.log"}
	s := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
	lf.append(cri(0, Stdout, "F", "first"))
	if got := s.wait(1); got[0].Line != "first" {
		t.Errorf("line = %q", got[0].Line)
	}
}

// A draining reader reads to the end of the log and returns nil, whether it
// was told before Run or while running; one whose log never appeared
// returns at once.
func TestContainerOutputDrainingReturnsAtEOF(t *testing.T) {
	t.Run("before Run", func(t *testing.T) {
		lf := newLogFile(t, cri(0, Stdout, "F", "a"), cri(1, Stderr, "F", "b"))
		s := newSink(t)
		co := newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil)
		co.SetDraining(true)
		r := runReader(t, co)
		if err := r.wait(); err != nil {
			t.Errorf("Run = %v", err)
		}
		if got := lines(s.entries()); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("drained %q, want [a b]", got)
		}
	})
	t.Run("while running", func(t *testing.T) {
		lf := newLogFile(t, cri(0, Stdout, "F", "a"))
		s := newSink(t)
		co := newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil)
		r := runReader(t, co)
		s.wait(1)
		lf.append(cri(1, Stdout, "F", "last words"))
		co.SetDraining(true)
		if err := r.wait(); err != nil {
			t.Errorf("Run = %v", err)
		}
		if got := lines(s.entries()); !slices.Equal(got, []string{"a", "last words"}) {
			t.Errorf("drained %q, want [a \"last words\"]", got)
		}
	})
	t.Run("no log", func(t *testing.T) {
		s := newSink(t)
		co := newReader(t, testTarget(t.TempDir()+"/missing.log"), openStore(t, t.TempDir()), s.consumer(), false, nil)
		co.SetDraining(true)
		if err := runReader(t, co).wait(); !errors.Is(err, errLogGone) {
			t.Errorf("Run = %v, want errLogGone (nothing read: the scheduler may read the log elsewhere)", err)
		}
	})
}

// Run returns nil promptly when its context is cancelled: while idle at the
// end of the log, while the consumer blocks (backpressure), and while
// waiting for the log to appear.
func TestContainerOutputReturnsOnCancel(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		lf := newLogFile(t, cri(0, Stdout, "F", "a"))
		s := newSink(t)
		r := runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
		s.wait(1)
		if err := r.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	t.Run("blocked consumer", func(t *testing.T) {
		lf := newLogFile(t, cri(0, Stdout, "F", "a"), cri(1, Stdout, "F", "b"))
		entered := make(chan struct{}, 1)
		block := pipeline.ConsumerFunc(func(ctx context.Context, _ []pipeline.Entry) (int, error) {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return 0, ctx.Err()
		})
		store := openStore(t, t.TempDir())
		r := runReader(t, newReader(t, testTarget(lf.path), store, block, false, nil))
		select {
		case <-entered:
		case <-time.After(waitLimit):
			t.Fatal("consumer never called")
		}
		if err := r.stop(); err != nil {
			t.Errorf("Run = %v, want nil on cancel", err)
		}
		if p, ok := store.Get(Key(testID)); ok {
			t.Errorf("position %+v stored for entries never taken", p)
		}
	})
	t.Run("no log yet", func(t *testing.T) {
		s := newSink(t)
		r := runReader(t, newReader(t, testTarget(t.TempDir()+"/none.log"), openStore(t, t.TempDir()), s.consumer(), false, nil))
		if err := r.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

// A consumer error other than cancellation ends Run with that error; the
// refused entry is not counted as in flight, so acking the earlier ones
// stores the position before it and the next reader reads it again.
func TestContainerOutputConsumerErrorEndsRun(t *testing.T) {
	l1 := cri(0, Stdout, "F", "a")
	lf := newLogFile(t, l1, cri(1, Stdout, "F", "b"), cri(2, Stdout, "F", "c"))
	store := openStore(t, t.TempDir())
	boom := errors.New("boom")
	s := newSink(t)
	s.failAt, s.failErr = 2, boom
	r := runReader(t, newReader(t, testTarget(lf.path), store, s.consumer(), false, nil))
	if err := r.wait(); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want an error wrapping %v", err, boom)
	}
	got := s.entries()
	if !slices.Equal(lines(got), []string{"a"}) {
		t.Fatalf("taken %q, want [a]", lines(got))
	}
	ack(got...)
	if p, _ := store.Get(Key(testID)); p.Offset != int64(len(l1)) {
		t.Errorf("offset = %d, want %d", p.Offset, len(l1))
	}

	s2 := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), store, s2.consumer(), false, nil))
	if got := s2.wait(2); !slices.Equal(lines(got), []string{"b", "c"}) {
		t.Errorf("second run read %q, want [b c]", lines(got))
	}
}

// Once ctx is cancelled Run stops reading: it neither goes on offering the
// rest of a backlog to a consumer that refuses (one syscall and one Consume
// per line), nor keeps feeding a consumer that still accepts (loki.Client
// admits entries while its queue has room, whatever ctx says) until EOF.
func TestContainerOutputStopsReadingOnCancel(t *testing.T) {
	// was skipped: bug fixed
	const n = 20000
	var b strings.Builder
	for i := range n {
		b.WriteString(cri(int64(i), Stdout, "F", "a line of the backlog"))
	}
	lineLen := len(cri(0, Stdout, "F", "a line of the backlog"))
	lf := newLogFile(t, b.String())

	for _, refuse := range []bool{true, false} {
		name := "accepting consumer"
		if refuse {
			name = "refusing consumer"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			calls := 0
			next := pipeline.ConsumerFunc(func(cctx context.Context, es []pipeline.Entry) (int, error) {
				mu.Lock()
				calls += len(es)
				mu.Unlock()
				cancel() // shutdown begins while the first entry is being taken
				if refuse {
					return 0, cctx.Err()
				}
				return len(es), nil
			})
			co := newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), next, false, nil)
			done := make(chan error, 1)
			go func() { done <- co.Run(ctx) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run = %v", err)
				}
			case <-time.After(waitLimit):
				t.Fatal("Run did not return")
			}
			mu.Lock()
			defer mu.Unlock()
			// At most what one read had already buffered may still be offered.
			if limit := readChunk/lineLen + 1; calls > limit {
				t.Errorf("Consume called %d times for a %d-line backlog after ctx was cancelled at the first; want at most %d", calls, n, limit)
			}
		})
	}
}
