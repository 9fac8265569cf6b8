package source

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/source/positions"
)

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
	if got[3].Pos>>posShift != int64(len(after)) {
		t.Errorf("after truncation Pos offset = %d, want %d (offset from 0)", got[3].Pos>>posShift, len(after))
	}
	lf.append(cri(4, Stdout, "F", "more"))
	if got := s.wait(5); got[4].Line != "more" {
		t.Errorf("then read %q, want \"more\"", got[4].Line)
	}
}

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
