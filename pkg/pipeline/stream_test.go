package pipeline

import (
	"context"
	"errors"
	"maps"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// batchSink records hand-overs; while full it refuses with the context's
// error, as a sink pushing back does once the caller's wait ends.
type batchSink struct {
	mu      sync.Mutex
	calls   []int // entries per Consume call
	entries []Entry
	full    bool
}

func (b *batchSink) Consume(ctx context.Context, es []Entry) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.full {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	b.calls = append(b.calls, len(es))
	for _, e := range es { // a Consumer copies what it keeps
		e.Line, e.Metadata = strings.Clone(e.Line), slices.Clone(e.Metadata)
		b.entries = append(b.entries, e)
	}
	return len(es), nil
}

func (b *batchSink) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, e := range b.entries {
		out = append(out, e.Line)
	}
	return out
}

// A Stream hands a read's entries over in one call at Flush; when
// the sink pushes back they stay, in order, and a full outbox refuses the
// next line (not taken, so its source keeps it) instead of growing.
func TestBufferedStreamHandsOverAtFlush(t *testing.T) {
	sink := &batchSink{}
	var acked []int64
	s := NewStream(StreamConfig{Tenant: "t", Labels: map[string]string{"tenant": "t"},
		OnAck: func(pos int64, _ map[string]int64) { acked = append(acked, pos) }}, nil, Sink{Consumer: sink})
	ctx := context.Background()
	t0 := time.Unix(1_700_000_000, 0)
	send := func(ctx context.Context, i int) error {
		return s.Send(ctx, t0.Add(time.Duration(i)), "line "+strconv.Itoa(i), int64(i))
	}
	for i := 1; i <= 3; i++ {
		if err := send(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if got := sink.lines(); len(got) != 0 || s.Buffered() != 3 {
		t.Fatalf("handed over before Flush: %v (buffered %d)", got, s.Buffered())
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sink.calls, []int{3}) || s.Buffered() != 0 {
		t.Fatalf("hand-overs %v, buffered %d; want one of 3, none left", sink.calls, s.Buffered())
	}

	// The sink pushes back: Flush fails and keeps them; once the outbox is
	// full, Send refuses.
	sink.mu.Lock()
	sink.full = true
	sink.mu.Unlock()
	next := 4
	for ; next < 4+outboxSize; next++ {
		if err := send(ctx, next); err != nil {
			t.Fatalf("line %d: %v", next, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := s.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush while pushed back: %v", err)
	}
	if err := send(short, next); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send into a full outbox: %v", err)
	}
	if s.Buffered() != outboxSize {
		t.Fatalf("buffered %d, want %d", s.Buffered(), outboxSize)
	}
	sink.mu.Lock()
	sink.full = false
	sink.mu.Unlock()
	if err := send(ctx, next); err != nil { // the refused line, again
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 1; i <= next; i++ {
		want = append(want, "line "+strconv.Itoa(i))
	}
	if got := sink.lines(); !slices.Equal(got, want) {
		t.Fatalf("sink got %d lines %v..., want %d in order", len(got), got[:min(5, len(got))], len(want))
	}
	// Acknowledging the last settles everything, once.
	s.Ack(int64(next))
	if !slices.Equal(acked, []int64{int64(next)}) {
		t.Fatalf("acks %v", acked)
	}
}

// Entries in flight by the thousand, acknowledged in runs of any length
// while more are sent (the pending array compacts, grows into pooled
// arrays and is given back when all is acknowledged): each Ack moves the
// position to exactly its pos and the stream's last acknowledged time to
// that of the entry at pos, and a refused Send is forgotten.
func TestPendingAcrossGrowthAndCompaction(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	sink := &batchSink{}
	var gotPos int64
	var gotLast map[string]int64
	s := NewStream(StreamConfig{Tenant: "t", Labels: map[string]string{"tenant": "t"},
		OnAck: func(pos int64, last map[string]int64) { gotPos, gotLast = pos, last }}, nil, Sink{Consumer: sink})
	t0 := time.Unix(1_700_000_000, 0)
	sent, acked := 0, 0
	for round := 0; round < 200; round++ {
		for n := rng.Intn(3000); n > 0; n-- {
			sent++
			if err := s.Send(context.Background(), t0.Add(time.Duration(sent)), "l", int64(sent)); err != nil {
				t.Fatal(err)
			}
		}
		if round%17 == 0 {
			// The sink pushes back: Send takes lines until the outbox is
			// full, then refuses one, which is not in flight afterwards.
			sink.mu.Lock()
			sink.full = true
			sink.mu.Unlock()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			for taken := 0; ; taken++ {
				if taken > outboxSize {
					t.Fatal("Send never refused a line while the sink pushed back")
				}
				if err := s.Send(ctx, t0.Add(time.Duration(sent+1)), "l", int64(sent+1)); err != nil {
					break
				}
				sent++
			}
			sink.mu.Lock()
			sink.full = false
			sink.mu.Unlock()
		}
		if acked == sent {
			continue
		}
		to := acked + 1 + rng.Intn(sent-acked)
		if round%5 == 0 {
			to = sent // everything: the array goes back to its pool
		}
		s.Ack(int64(to))
		acked = to
		if gotPos != int64(to) || len(gotLast) != 1 {
			t.Fatalf("round %d: Ack(%d) reported %d, %v", round, to, gotPos, gotLast)
		}
		for _, ns := range gotLast {
			if ns != t0.Add(time.Duration(to)).UnixNano() {
				t.Fatalf("round %d: last time after Ack(%d) is %d, want the entry at %d's", round, to, ns, to)
			}
		}
		s.mu.Lock()
		inFlight := len(s.pending) - s.head
		s.mu.Unlock()
		if inFlight != sent-acked {
			t.Fatalf("round %d: %d in flight, want %d", round, inFlight, sent-acked)
		}
	}
}

// The render cache's key: the same label set however its map was filled
// gives the same key, and sets that differ never share one, whatever bytes
// (NULs, shifted boundaries) their names and values hold.
func TestAppendSignature(t *testing.T) {
	sets := []map[string]string{
		{},
		{"a": "b"},
		{"a": "b", "c": "d"},
		{"a": "b\x00c\x00d"},
		{"a": "b\x00", "c": "d"},
		{"a\x00b": ""},
		{"a": "\x00b"},
		{"ab": ""},
		{"a": "b", "c": "d", "e": "f", "g": "h", "i": "j", "k": "l", "m": "n", "o": "p", "q": "r"},
	}
	seen := map[string]int{}
	for i, m := range sets {
		k := string(appendSignature(nil, m))
		if j, dup := seen[k]; dup {
			t.Errorf("sets %v and %v share the key %q", sets[j], m, k)
		}
		seen[k] = i
		again := map[string]string{}
		keys := slices.Sorted(maps.Keys(m))
		slices.Reverse(keys)
		for _, name := range keys {
			again[name] = m[name]
		}
		if k2 := string(appendSignature([]byte("junk"), again)[4:]); k2 != k {
			t.Errorf("%v: key %q, filled in another order %q", m, k, k2)
		}
	}
}

// skipper is a stage that records being told nothing reads Fields.
type skipper struct{ told bool }

func (s *skipper) Process(*Record) (bool, string) { return true, "" }
func (s *skipper) SkipFields()                    { s.told = true }

// NewStream tells its pipeline's last stage, and only that one, that
// nothing reads Fields after it (FieldsSkipper: the zap stage then fills
// none); a pipeline without stages, or none, is fine.
func TestStreamTellsLastStageFieldsUnread(t *testing.T) {
	first, last := &skipper{}, &skipper{}
	NewStream(StreamConfig{}, New(first, last), Sink{})
	if first.told || !last.told {
		t.Errorf("told: first %v, last %v; want the last only", first.told, last.told)
	}
	NewStream(StreamConfig{}, New(), Sink{})
	NewStream(StreamConfig{}, nil, Sink{})
}

// A source's own metadata (StreamConfig.Metadata) follows what stages set
// on every entry, borrowed lines or not, and is there alone when stages set
// none.
func TestStreamSourceMetadata(t *testing.T) {
	for _, borrowed := range []bool{false, true} {
		sink := &batchSink{}
		s := NewStream(StreamConfig{Tenant: "t", Labels: map[string]string{"tenant": "t"}, BorrowedLines: borrowed,
			Metadata: []Label{{"container", "shop-1"}, {"host", "web-1"}}},
			New(StageFunc(func(r *Record) (bool, string) {
				if r.Line != "plain" {
					r.SetMetadata("caller", r.Line)
				}
				return true, ""
			})), Sink{Consumer: sink})
		t0 := time.Unix(1_700_000_000, 0)
		for i, line := range []string{"a.go:1", "plain", "b.go:2"} {
			if err := s.Send(context.Background(), t0, line, int64(i+1)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := [][]Label{
			{{"caller", "a.go:1"}, {"container", "shop-1"}, {"host", "web-1"}},
			{{"container", "shop-1"}, {"host", "web-1"}},
			{{"caller", "b.go:2"}, {"container", "shop-1"}, {"host", "web-1"}},
		}
		for i, e := range sink.entries {
			if !slices.Equal(e.Metadata, want[i]) {
				t.Errorf("borrowed=%v: entry %d metadata %v, want %v", borrowed, i, e.Metadata, want[i])
			}
		}
	}
}
