package source

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// A reader started on an existing log ships its lines from the start with
// the container's times, the target's tenant and the byte offset after each
// line as Pos, then follows lines appended later, including one written in
// two pieces.
func TestContainerOutputFollowsAppendedLines(t *testing.T) {
	l1, l2 := cri(0, Stdout, "F", "one"), cri(1000, Stdout, "F", "two")
	lf := newLogFile(t, l1, l2)
	s := newSink(t)
	r := runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
	s.wait(2)

	l3, l4 := cri(2000, Stdout, "F", "three"), cri(3000, Stderr, "F", "four")
	lf.append(l3)
	lf.append(l4[:10]) // a line is only shipped once complete
	s.wait(3)
	lf.append(l4[10:])
	got := s.wait(4)

	if want := []string{"one", "two", "three", "four"}; !slices.Equal(lines(got), want) {
		t.Fatalf("lines = %q, want %q", lines(got), want)
	}
	ends := []int64{int64(len(l1)), int64(len(l1 + l2)), int64(len(l1 + l2 + l3)), int64(len(l1 + l2 + l3 + l4))}
	for i, e := range got {
		if want := base.Add(time.Duration(i) * time.Microsecond); !e.Time.Equal(want) {
			t.Errorf("entry %d time = %v, want %v", i, e.Time, want)
		}
		if e.Tenant != "t" {
			t.Errorf("entry %d tenant = %q", i, e.Tenant)
		}
		if e.Pos != ends[i] {
			t.Errorf("entry %d Pos = %d, want %d", i, e.Pos, ends[i])
		}
		if e.Ack == nil {
			t.Errorf("entry %d has no Acker", i)
		}
	}
	if err := r.stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}

// Partial (P) lines are joined with the final (F) line of the same stream
// into one entry carrying the F line's time and end offset; a line of the
// other stream in between is not mixed in.
func TestContainerOutputReassemblesPartialLines(t *testing.T) {
	ls := []string{
		cri(0, Stdout, "P", "ab"),
		cri(1, Stdout, "P", "cd"),
		cri(2, Stderr, "F", "err"),
		cri(3, Stdout, "F", "ef"),
		cri(4, Stdout, "F", "next"),
	}
	lf := newLogFile(t, ls...)
	s := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
	got := s.wait(3)
	if want := []string{"err", "abcdef", "next"}; !slices.Equal(lines(got), want) {
		t.Fatalf("lines = %q, want %q", lines(got), want)
	}
	joined := got[1]
	if !joined.Time.Equal(base.Add(3)) {
		t.Errorf("joined entry time = %v, want the F line's %v", joined.Time, base.Add(3))
	}
	if want := int64(len(ls[0] + ls[1] + ls[2] + ls[3])); joined.Pos != want {
		t.Errorf("joined entry Pos = %d, want the F line's end %d", joined.Pos, want)
	}
	if !strings.Contains(joined.Labels, `stream="stdout"`) {
		t.Errorf("joined entry labels = %s", joined.Labels)
	}
}

// A line longer than the read buffer is shipped whole, and a run of partial
// lines longer than the line limit (limits.max_line_bytes, 256 KiB by
// default) is shipped once, truncated with a marker, its remaining parts
// passed over; the line after it arrives intact.
func TestContainerOutputLongLines(t *testing.T) {
	long := strings.Repeat("x", 3*readChunk+17)
	chunk := strings.Repeat("y", 8<<10)
	var parts []string
	for i := range MaxLineBytes/len(chunk) + 10 {
		parts = append(parts, cri(int64(i), Stderr, "P", chunk))
	}
	parts = append(parts, cri(1<<20, Stderr, "F", "end"), cri(1<<21, Stderr, "F", "next"))
	lf := newLogFile(t, append([]string{cri(0, Stdout, "F", long)}, parts...)...)

	s := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
	es := s.wait(3)
	if es[0].Line != long {
		t.Fatalf("long line: got %d bytes, want %d", len(es[0].Line), len(long))
	}
	max := pipeline.DefaultMaxLineBytes
	if l := es[1].Line; len(l) != max || !strings.HasSuffix(l, pipeline.TruncationMarker) || !strings.HasPrefix(l, chunk) {
		t.Errorf("over-long partial run: %d bytes, want %d ending in the marker", len(l), max)
	}
	if es[2].Line != "next" {
		t.Errorf("line after the over-long one: %.40q, want \"next\"", es[2].Line)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(s.entries()); n != 3 {
		t.Errorf("%d entries, want 3: the rest of the over-long line must not be shipped", n)
	}
}

// stdout and stderr lines go to their own label sets (the target's labels
// plus stream="stdout" or stream="stderr"), whatever their interleaving.
func TestContainerOutputSplitsStreamsIntoLabels(t *testing.T) {
	lf := newLogFile(t,
		cri(0, Stdout, "F", "o1"), cri(1, Stderr, "F", "e1"),
		cri(2, Stderr, "F", "e2"), cri(3, Stdout, "F", "o2"),
	)
	s := newSink(t)
	tg := testTarget(lf.path)
	runReader(t, newReader(t, tg, openStore(t, t.TempDir()), s.consumer(), false, nil))
	got := s.wait(4)
	for _, e := range got {
		stream := Stdout
		if strings.HasPrefix(e.Line, "e") {
			stream = Stderr
		}
		if !strings.Contains(e.Labels, `stream="`+stream+`"`) {
			t.Errorf("%s: labels %s lack stream=%q", e.Line, e.Labels, stream)
		}
		for _, l := range []string{`tenant="t"`, `application="a"`, `version="v1"`} {
			if !strings.Contains(e.Labels, l) {
				t.Errorf("%s: labels %s lack %s", e.Line, e.Labels, l)
			}
		}
		if e.Labels != labelsOf[stream] {
			t.Errorf("%s: labels %s, want %s", e.Line, e.Labels, labelsOf[stream])
		}
	}
}

// Label values are rendered quoted, with quotes and backslashes escaped,
// names sorted; a target without application and version has neither label.
func TestContainerOutputRendersLabels(t *testing.T) {
	lf := newLogFile(t, cri(0, Stderr, "F", "x"))
	for _, tc := range []struct {
		app, version, want string
	}{
		{`sh"op\1`, "v 1", `{application="sh\"op\\1", stream="stderr", tenant="t", version="v 1"}`},
		{"", "", `{stream="stderr", tenant="t"}`},
	} {
		tg := testTarget(lf.path)
		tg.App, tg.Version = tc.app, tc.version
		s := newSink(t)
		r := runReader(t, newReader(t, tg, openStore(t, t.TempDir()), s.consumer(), false, nil))
		if got := s.wait(1)[0].Labels; got != tc.want {
			t.Errorf("labels = %s, want %s", got, tc.want)
		}
		if err := r.stop(); err != nil {
			t.Error(err)
		}
	}
}

// Lines of one stream with the same time (conmon stamps one read's lines
// alike), or an earlier one, get strictly increasing times, 1ns apart; each
// stream counts on its own.
func TestContainerOutputMakesTimesStrictlyIncreasingPerStream(t *testing.T) {
	lf := newLogFile(t,
		cri(0, Stdout, "F", "o1"), cri(0, Stdout, "F", "o2"), cri(0, Stderr, "F", "e1"),
		cri(0, Stdout, "F", "o3"), cri(0, Stderr, "F", "e2"),
		cri(-50, Stdout, "F", "o4"), // earlier than the previous line
		cri(500, Stdout, "F", "o5"), // later: kept as is
	)
	s := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
	got := s.wait(7)
	want := map[string]int64{"o1": 0, "o2": 1, "e1": 0, "o3": 2, "e2": 1, "o4": 3, "o5": 500}
	for _, e := range got {
		if w := base.Add(time.Duration(want[e.Line])); !e.Time.Equal(w) {
			t.Errorf("%s time = base%+dns, want base%+dns", e.Line, e.Time.Sub(base), want[e.Line])
		}
	}
}

// Nothing is stored before the sink acknowledges; acknowledging the first k
// entries stores the offset after the k-th, with its inode and the last time
// sent per stream; acknowledging the rest moves it to the end.
func TestContainerOutputStoresPositionOnlyOnAck(t *testing.T) {
	ls := []string{cri(0, Stdout, "F", "a"), cri(0, Stderr, "F", "b"), cri(0, Stdout, "F", "c"), cri(0, Stdout, "F", "d"), cri(9, Stderr, "F", "e")}
	lf := newLogFile(t, ls...)
	store := openStore(t, t.TempDir())
	s := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), store, s.consumer(), false, nil))
	got := s.wait(5)
	if p, ok := store.Get(Key(testID)); ok {
		t.Fatalf("position %+v stored before any ack", p)
	}

	ack(got[:3]...)
	p, ok := store.Get(Key(testID))
	if !ok {
		t.Fatal("no position after acking 3 entries")
	}
	if want := int64(len(ls[0] + ls[1] + ls[2])); p.Offset != want {
		t.Errorf("offset after 3 acks = %d, want %d", p.Offset, want)
	}
	if p.Path != lf.path || p.Inode != lf.inode() {
		t.Errorf("position path/inode = %s/%d, want %s/%d", p.Path, p.Inode, lf.path, lf.inode())
	}
	// Last is keyed per Loki stream (the key is opaque): one time each.
	if lastTimes := slices.Sorted(maps.Values(p.Last)); !slices.Equal(lastTimes, []int64{got[1].Time.UnixNano(), got[2].Time.UnixNano()}) {
		t.Errorf("position Last = %v, want the times of the last acked stderr (%d) and stdout (%d) entries",
			p.Last, got[1].Time.UnixNano(), got[2].Time.UnixNano())
	}

	ack(got[3:]...)
	if p, _ := store.Get(Key(testID)); p.Offset != lf.size() {
		t.Errorf("offset after acking all = %d, want the file size %d", p.Offset, lf.size())
	}
}

// A reader started again on the same positions (even through the file)
// resumes right after the last acknowledged entry and gives the entries it
// reads again exactly the times, labels and positions the first run gave
// them, so Loki drops the resend as a duplicate.
func TestContainerOutputResumesWithSameTimes(t *testing.T) {
	var ls []string
	for i, c := range "abcdefgh" {
		stream := Stdout
		if i%3 == 1 {
			stream = Stderr
		}
		ls = append(ls, cri(int64(i/4), stream, "F", string(c))) // runs of equal times
	}
	lf := newLogFile(t, ls...)
	dir := t.TempDir()
	store := openStore(t, dir)

	s1 := newSink(t)
	r1 := runReader(t, newReader(t, testTarget(lf.path), store, s1.consumer(), false, nil))
	first := s1.wait(len(ls))
	const k = 4
	ack(first[:k]...)
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	if err := store.Sync(); err != nil {
		t.Fatal(err)
	}

	s2 := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), openStore(t, dir), s2.consumer(), false, nil))
	again := s2.wait(len(ls) - k)
	if len(again) != len(ls)-k {
		t.Fatalf("second run read %q, want %q", lines(again), lines(first[k:]))
	}
	for i, e := range again {
		w := first[k+i]
		if e.Line != w.Line || !e.Time.Equal(w.Time) || e.Labels != w.Labels || e.Pos != w.Pos {
			t.Errorf("resent entry %d = {%q %d %s %d}, first run had {%q %d %s %d}", i,
				e.Line, e.Time.UnixNano(), e.Labels, e.Pos, w.Line, w.Time.UnixNano(), w.Labels, w.Pos)
		}
	}
}

// With fromEnd and no stored position, the lines already in the log are
// skipped (and that start is stored at once); only lines appended later are
// shipped. A stored position wins over fromEnd.
func TestContainerOutputFromEnd(t *testing.T) {
	t.Run("no position", func(t *testing.T) {
		lf := newLogFile(t, cri(0, Stdout, "F", "old1"), cri(1, Stdout, "F", "old2"))
		store := openStore(t, t.TempDir())
		s := newSink(t)
		runReader(t, newReader(t, testTarget(lf.path), store, s.consumer(), true, nil))
		eventually(t, "the start position", func() bool {
			p, ok := store.Get(Key(testID))
			return ok && p.Offset == lf.size()
		})
		lf.append(cri(2, Stdout, "F", "new"))
		got := s.wait(1)
		if want := []string{"new"}; !slices.Equal(lines(got), want) {
			t.Errorf("lines = %q, want %q", lines(got), want)
		}
	})
	t.Run("stored position", func(t *testing.T) {
		l1 := cri(0, Stdout, "F", "acked")
		lf := newLogFile(t, l1, cri(1, Stdout, "F", "unacked"))
		store := openStore(t, t.TempDir())
		store.Put(Key(testID), positions.Position{Path: lf.path, Inode: lf.inode(), Offset: int64(len(l1))})
		s := newSink(t)
		runReader(t, newReader(t, testTarget(lf.path), store, s.consumer(), true, nil))
		got := s.wait(1)
		if got[0].Line != "unacked" {
			t.Errorf("first line = %q, want \"unacked\"", got[0].Line)
		}
	})
}

// A stored position that cannot belong to the current log (an offset beyond
// its size, or another inode) is discarded: reading restarts at offset 0
// with the lines' own times, not the stored Last times.
func TestContainerOutputRestartsOnStalePosition(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(p *positions.Position, lf *logFile)
	}{
		{"offset beyond size", func(p *positions.Position, lf *logFile) { p.Offset = lf.size() + 100 }},
		{"other inode", func(p *positions.Position, lf *logFile) { p.Inode++; p.Offset = int64(len(cri(0, Stdout, "F", "one"))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lf := newLogFile(t, cri(0, Stdout, "F", "one"), cri(0, Stdout, "F", "two"))
			store := openStore(t, t.TempDir())
			// A first run stores a real position (with its Last keys)...
			s1 := newSink(t)
			r1 := runReader(t, newReader(t, testTarget(lf.path), store, s1.consumer(), false, nil))
			ack(s1.wait(2)...)
			if err := r1.stop(); err != nil {
				t.Fatal(err)
			}
			// ...which is then made stale, with Last times far ahead.
			p, ok := store.Get(Key(testID))
			if !ok || len(p.Last) == 0 {
				t.Fatalf("test setup: stored position %+v, %v", p, ok)
			}
			tc.spoil(&p, lf)
			for k := range p.Last {
				p.Last[k] = base.Add(time.Minute).UnixNano()
			}
			store.Put(Key(testID), p)

			s := newSink(t)
			runReader(t, newReader(t, testTarget(lf.path), store, s.consumer(), false, nil))
			got := s.wait(2)
			if want := []string{"one", "two"}; !slices.Equal(lines(got), want) {
				t.Fatalf("lines = %q, want %q", lines(got), want)
			}
			if !got[0].Time.Equal(base) || !got[1].Time.Equal(base.Add(1)) {
				t.Errorf("times = base%+v, base%+v; want the lines' own, base and base+1ns", got[0].Time.Sub(base), got[1].Time.Sub(base))
			}
		})
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
		if err := runReader(t, co).wait(); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

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

// A log truncated in place while being read (Podman's log max-size) is
// noticed at its end, and reading restarts at offset 0 of the same file.
func TestContainerOutputDetectsTruncationInPlace(t *testing.T) {
	lf := newLogFile(t, cri(0, Stdout, "F", "before-1"), cri(1, Stdout, "F", "before-2"), cri(2, Stdout, "F", "before-3"))
	s := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
	s.wait(3)
	ino := lf.inode()
	after := cri(3, Stdout, "F", "after")
	if err := os.WriteFile(lf.path, []byte(after), 0o644); err != nil { // O_TRUNC: same inode
		t.Fatal(err)
	}
	if lf.inode() != ino {
		t.Fatal("test setup: truncation changed the inode")
	}
	got := s.wait(4)
	if got[3].Line != "after" {
		t.Fatalf("after truncation read %q, want \"after\"", got[3].Line)
	}
	if got[3].Pos != int64(len(after)) {
		t.Errorf("after truncation Pos = %d, want %d (offset from 0)", got[3].Pos, len(after))
	}
	lf.append(cri(4, Stdout, "F", "more"))
	if got := s.wait(5); got[4].Line != "more" {
		t.Errorf("then read %q, want \"more\"", got[4].Line)
	}
}

// A line that is not in CRI format is shipped as read on the stdout stream
// (not lost) and counted in podtail_source_malformed_lines_total; the read
// counters count every line and byte.
func TestContainerOutputShipsMalformedLines(t *testing.T) {
	lf := newLogFile(t, cri(0, Stdout, "F", "ok1"), "this is not cri\n", cri(1, Stderr, "F", "ok2"))
	reg := prometheus.NewRegistry()
	s := newSink(t)
	tg := testTarget(lf.path)
	runReader(t, newReader(t, tg, openStore(t, t.TempDir()), s.consumer(), false, NewMetrics(reg)))
	got := s.wait(3)
	if want := []string{"ok1", "this is not cri", "ok2"}; !slices.Equal(lines(got), want) {
		t.Fatalf("lines = %q, want %q", lines(got), want)
	}
	if got[1].Labels != labelsOf[Stdout] {
		t.Errorf("malformed line labels = %s, want %s", got[1].Labels, labelsOf[Stdout])
	}
	want := `
# HELP podtail_source_malformed_lines_total Container log lines not in CRI format, shipped as read.
# TYPE podtail_source_malformed_lines_total counter
podtail_source_malformed_lines_total{tenant="t"} 1
# HELP podtail_source_entries_read_total Log entries read from sources.
# TYPE podtail_source_entries_read_total counter
podtail_source_entries_read_total{tenant="t"} 3
# HELP podtail_source_bytes_read_total Bytes read from sources (as stored, CRI framing included).
# TYPE podtail_source_bytes_read_total counter
podtail_source_bytes_read_total{tenant="t"} ` + itoa(lf.size()) + `
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"podtail_source_malformed_lines_total", "podtail_source_entries_read_total", "podtail_source_bytes_read_total"); err != nil {
		t.Error(err)
	}
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

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A partial (P) line of one stream that precedes an acknowledged entry of
// the other stream is not lost on resume: the stored position must not skip
// bytes of an entry still being reassembled, so a reader started again on
// the same positions ships the whole stdout line.
func TestContainerOutputResumeKeepsOtherStreamPartial(t *testing.T) {
	// was skipped: bug fixed
	lf := newLogFile(t,
		cri(0, Stdout, "P", "head-"),
		cri(1, Stderr, "F", "err"),
		cri(2, Stdout, "F", "tail"),
	)
	store := openStore(t, t.TempDir())
	s1 := newSink(t)
	r1 := runReader(t, newReader(t, testTarget(lf.path), store, s1.consumer(), false, nil))
	first := s1.wait(2)
	if want := []string{"err", "head-tail"}; !slices.Equal(lines(first), want) {
		t.Fatalf("first run read %q, want %q", lines(first), want)
	}
	ack(first[0]) // only the stderr line was delivered
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}

	s2 := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), store, s2.consumer(), false, nil))
	if got := s2.wait(1); got[0].Line != "head-tail" {
		t.Errorf("after restart the undelivered stdout entry is %q, want \"head-tail\"", got[0].Line)
	}
}

// Acknowledging the entries read before a truncation in place must not
// store a position that covers lines of the new content that were not
// acknowledged: a reader started again on the same positions ships the
// first line written after the truncation.
func TestContainerOutputAckAcrossTruncationKeepsNewLines(t *testing.T) {
	// was skipped: bug fixed
	old := []string{cri(0, Stdout, "F", "before-1"), cri(1, Stdout, "F", "before-2"), cri(2, Stdout, "F", "before-3")}
	lf := newLogFile(t, old...)
	store := openStore(t, t.TempDir())
	s1 := newSink(t)
	r1 := runReader(t, newReader(t, testTarget(lf.path), store, s1.consumer(), false, nil))
	s1.wait(3)
	if err := os.WriteFile(lf.path, []byte(cri(3, Stdout, "F", "after-1")), 0o644); err != nil {
		t.Fatal(err)
	}
	got := s1.wait(4)
	ack(got[:3]...) // Loki confirms the old lines; "after-1" is still in flight
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	// The container goes on writing; the file grows past the old size.
	for i := range 4 {
		lf.append(cri(int64(4+i), Stdout, "F", "after-"+strconv.Itoa(i+2)))
	}

	s2 := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), store, s2.consumer(), false, nil))
	if got := s2.wait(1); got[0].Line != "after-1" {
		p, _ := store.Get(Key(testID))
		t.Errorf("after restart the first line is %q, want the unacknowledged \"after-1\" (stored offset %d)", got[0].Line, p.Offset)
	}
}

// A line that is not in CRI format does not change the times of the lines
// after it: they keep their own times (Entry.Time is "never the time
// podtail read it").
func TestContainerOutputMalformedLineKeepsLaterTimes(t *testing.T) {
	// was skipped: bug fixed
	own := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	lf := newLogFile(t,
		own.Format(conmonTime)+" stdout F before\n",
		"not cri\n",
		own.Add(time.Second).Format(conmonTime)+" stdout F after\n",
	)
	s := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
	got := s.wait(3)
	if want := own.Add(time.Second); !got[2].Time.Equal(want) {
		t.Errorf("line after the malformed one has time %v, want its own %v", got[2].Time, want)
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

// With a sink that copies lines, the reader lends it views of its buffer:
// across many reads, lines split into parts by conmon, and both streams,
// every line arrives once, whole and unchanged. (Reads that end with a
// long partial line catch a hand-over after the buffer moved.)
func TestContainerOutputLendsLinesToACopyingSink(t *testing.T) {
	var all []string
	var want []string
	for i := 0; i < 20000; i++ {
		stream := Stdout
		if i%7 == 0 {
			stream = Stderr
		}
		n := i % 300
		if i%3 == 0 {
			n = 5000 + i%2000 // a few lines per read, and a long partial one left after them
		}
		content := fmt.Sprintf(`{"level":"info","seq":%d,"msg":"%s"}`, i, strings.Repeat(string(rune('a'+i%26)), n))
		if i%50 == 0 {
			// Split by conmon into parts.
			all = append(all, cri(int64(i)*1000, stream, "P", content[:10]), cri(int64(i)*1000+1, stream, "F", content[10:]))
		} else {
			all = append(all, cri(int64(i)*1000, stream, "F", content))
		}
		want = append(want, content)
	}
	lf := newLogFile(t, all...)
	s := newSink(t)
	runReader(t, newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil))
	got := lines(s.wait(len(want)))
	if !slices.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("line %d = %q, want %q (%d lines)", i, got[i], want[i], len(got))
			}
		}
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
}

// conmon 2.2.0 wrote an F line with no space before an empty message, and a
// container killed mid-line leaves a P part with no F after it: the empty
// line is shipped as one, and the dangling part once the container is gone,
// as the last line.
func TestContainerOutputConmonEdgeCases(t *testing.T) {
	lf := newLogFile(t,
		cri(0, Stdout, "F", "before"),
		base.Add(1).Format(conmonTime)+" stdout F\n", // conmon 2.2.0: no space, empty message
		cri(2, Stdout, "F", "after"),
		cri(3, Stderr, "P", "dangling "),
		cri(4, Stderr, "P", "part"),
	)
	s := newSink(t)
	co := newReader(t, testTarget(lf.path), openStore(t, t.TempDir()), s.consumer(), false, nil)
	r := runReader(t, co)
	if got := lines(s.wait(3)); !slices.Equal(got, []string{"before", "", "after"}) {
		t.Errorf("lines = %q, want [before \"\" after]", got)
	}
	co.SetDraining(true)
	if err := r.wait(); err != nil {
		t.Fatal(err)
	}
	got := s.entries()
	if len(got) != 4 || got[3].Line != "dangling part" || got[3].Labels != labelsOf[Stderr] {
		t.Errorf("after draining: %q, want the dangling part last, on stderr", lines(got))
	}
}
