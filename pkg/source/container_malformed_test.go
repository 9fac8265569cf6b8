package source

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

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

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

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
