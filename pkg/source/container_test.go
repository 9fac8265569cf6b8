package source

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// A reader started on an existing log ships its lines from the start with
// the container's times, the target's tenant and the byte offset after each
// line in Pos (its token, see token), then follows lines appended later,
// including one written in two pieces.
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
		if e.Pos>>posShift != ends[i] {
			t.Errorf("entry %d Pos offset = %d, want %d", i, e.Pos>>posShift, ends[i])
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
	if want := int64(len(ls[0] + ls[1] + ls[2] + ls[3])); joined.Pos>>posShift != want {
		t.Errorf("joined entry Pos offset = %d, want the F line's end %d", joined.Pos>>posShift, want)
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
