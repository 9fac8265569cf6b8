package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func byKey(r Result) map[Key]SourceResult {
	m := map[Key]SourceResult{}
	for _, s := range r.Sources {
		m[s.Key] = s
	}
	return m
}

// Every line once: nothing to report.
func TestLedgerExactlyOnce(t *testing.T) {
	l := NewLedger()
	k := Key{"t", "stdout", "c00001"}
	l.Expect(k, "churn", 100)
	for seq := 100; seq >= 1; seq-- { // Loki's order does not matter
		l.Observe(k, seq)
	}
	r := l.Check()
	if s := byKey(r)[k]; !s.OK() || s.Found != 100 || s.Want != 100 {
		t.Fatalf("%+v", s)
	}
	if r.All.Written != 100 || r.All.Found != 100 || r.All.Missing+r.All.Dup+r.All.Beyond != 0 || len(r.Failed()) != 0 {
		t.Fatalf("totals %+v", r.All)
	}
}

// Missing lines are counted and given as ranges, the first, the middle
// and the last included; a writer of which Loki holds nothing misses all.
func TestLedgerMissing(t *testing.T) {
	l := NewLedger()
	k := Key{"t", "stdout", "c00001"}
	none := Key{"t", "stderr", "c00001"}
	l.Expect(k, "churn", 20)
	l.Expect(none, "churn", 5)
	for seq := 1; seq <= 20; seq++ {
		if seq == 1 || (seq >= 7 && seq <= 9) || seq == 12 || seq == 20 {
			continue
		}
		l.Observe(k, seq)
	}
	r := l.Check()
	s := byKey(r)[k]
	if s.Missing != 6 || s.Dup != 0 || s.Found != 14 {
		t.Fatalf("%+v", s)
	}
	if want := []Range{{1, 1}, {7, 9}, {12, 12}, {20, 20}}; !reflect.DeepEqual(s.Gaps, want) {
		t.Fatalf("gaps %v, want %v", s.Gaps, want)
	}
	if got := firstRanges(s.Gaps, 8); got != "1 7-9 12 20" {
		t.Fatalf("ranges %q", got)
	}
	if n := byKey(r)[none]; n.Missing != 5 || !reflect.DeepEqual(n.Gaps, []Range{{1, 5}}) {
		t.Fatalf("%+v", n)
	}
	if r.All.Missing != 11 || len(r.Failed()) != 2 {
		t.Fatalf("totals %+v", r.All)
	}
}

// A line Loki returns twice is one duplicate, three times two; lines
// numbered past what the writer wrote, and writers nobody expected, are
// reported apart from duplicates.
func TestLedgerDuplicatesAndBeyond(t *testing.T) {
	l := NewLedger()
	k := Key{"t", "file", "zc0"}
	l.Expect(k, "zap", 10)
	for seq := 1; seq <= 10; seq++ {
		l.Observe(k, seq)
	}
	l.Observe(k, 4)
	l.Observe(k, 7)
	l.Observe(k, 7)
	l.Observe(k, 11) // never written
	l.Observe(k, 0)  // no such number
	stranger := Key{"t", "stdout", "c99999"}
	l.Observe(stranger, 1)
	r := l.Check()
	s := byKey(r)[k]
	if s.Dup != 3 || !reflect.DeepEqual(s.Dups, []int{4, 7}) || s.Missing != 0 || s.Beyond != 2 || s.Found != 15 {
		t.Fatalf("%+v", s)
	}
	if st := byKey(r)[stranger]; st.Class != "unexpected" || st.Beyond != 1 || st.Found != 1 || st.OK() {
		t.Fatalf("a writer nobody expected: %+v", st)
	}
	if r.All.Dup != 3 || r.All.Missing != 0 {
		t.Fatalf("totals %+v", r.All)
	}
}

// A writer whose count is unknown (it did not exit 0) is checked for
// duplicates only, and adds nothing to the lines written.
func TestLedgerUnknownCount(t *testing.T) {
	l := NewLedger()
	k := Key{"t", "stdout", "c00002"}
	l.Expect(k, "churn", Unknown)
	l.Observe(k, 1)
	l.Observe(k, 3)
	l.Observe(k, 3)
	r := l.Check()
	s := byKey(r)[k]
	if s.Missing != 0 || s.Dup != 1 || s.Beyond != 0 || s.Found != 3 {
		t.Fatalf("%+v", s)
	}
	if r.All.Written != 0 || r.All.Unknown != 1 {
		t.Fatalf("totals %+v", r.All)
	}
}

// Totals per class add up over their writers.
func TestLedgerByClass(t *testing.T) {
	l := NewLedger()
	for i := range 3 {
		k := Key{"t", "stdout", fmt.Sprintf("c%05d", i)}
		l.Expect(k, "a", 10)
		for seq := 1; seq <= 10-i; seq++ {
			l.Observe(k, seq)
		}
	}
	l.Expect(Key{"t", "file", "zh0"}, "b", 2)
	l.Observe(Key{"t", "file", "zh0"}, 1)
	l.Observe(Key{"t", "file", "zh0"}, 2)
	l.Observe(Key{"t", "file", "zh0"}, 2)
	r := l.Check()
	if a := r.ByClass["a"]; a.Sources != 3 || a.Written != 30 || a.Missing != 3 || a.Dup != 0 {
		t.Fatalf("a %+v", a)
	}
	if b := r.ByClass["b"]; b.Sources != 1 || b.Written != 2 || b.Dup != 1 {
		t.Fatalf("b %+v", b)
	}
}

// parseLine reads back each of the soak's line formats, and nothing else.
func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		line   string
		key    Key
		seq    int
		ok     bool
	}{
		{map[string]string{"stream": "stdout"}, "soak c00042 17 pad-xxxx", Key{"t", "stdout", "c00042"}, 17, true},
		{map[string]string{"stream": "stderr"}, "soak c00042 3 err", Key{"t", "stderr", "c00042"}, 3, true},
		{map[string]string{"stream": "stdout"}, "zc1-12345", Key{"t", "stdout", "zc1"}, 12345, true},
		{map[string]string{"stream": "file", "application": "zh0"}, `{"level":"info","ts":1.5,"msg":"request handled","n":99,"request_id":"req-00000099"}`, Key{"t", "file", "zh0"}, 99, true},
		{map[string]string{"stream": "file", "application": "zh0"}, `{"level":"info","msg":"no number"}`, Key{}, 0, false},
		{map[string]string{"stream": "file"}, `not json`, Key{}, 0, false},
		{map[string]string{"stream": "stdout"}, "soak c00042 x", Key{}, 0, false},
		{map[string]string{"stream": "stdout"}, "zc1-12a", Key{}, 0, false},
		{map[string]string{"stream": "stdout"}, "hello", Key{}, 0, false},
	} {
		k, seq, ok := parseLine("t", c.labels, c.line)
		if ok != c.ok || (ok && (k != c.key || seq != c.seq)) {
			t.Errorf("parseLine(%v, %q) = %v %d %v, want %v %d %v", c.labels, c.line, k, seq, ok, c.key, c.seq, c.ok)
		}
	}
}

// Paging: the next page starts at the last page's newest time, inclusive,
// and so returns that time's entries again; fresh leaves exactly those
// out, by count, so that a line Loki really holds twice at that time is
// still seen twice.
func TestOverlapFresh(t *testing.T) {
	e := func(ts int64, line string) entry { return entry{key: "{}\x00" + line, ts: ts, line: line} }
	o := overlap{ts: -1}
	page1 := []entry{e(1, "a"), e(2, "b"), e(5, "c"), e(5, "d")} // cut by the limit inside time 5
	got, o := o.fresh(page1)
	if len(got) != 4 || o.ts != 5 || o.left["{}\x00c"] != 1 || o.left["{}\x00d"] != 1 {
		t.Fatalf("page 1: %v, overlap %+v", got, o)
	}
	page2 := []entry{e(5, "c"), e(5, "d"), e(5, "d"), e(5, "x"), e(8, "y")} // d held twice, x unseen
	got, o = o.fresh(page2)
	var lines []string
	for _, x := range got {
		lines = append(lines, x.line)
	}
	if !reflect.DeepEqual(lines, []string{"d", "x", "y"}) || o.ts != 8 || len(o.left) != 1 {
		t.Fatalf("page 2: %v, overlap %+v", lines, o)
	}
	// A page wholly at the overlap's time: nothing fresh, the overlap kept.
	got, o = overlap{ts: 9, left: map[string]int{"{}\x00z": 1}}.fresh([]entry{e(9, "z")})
	if len(got) != 0 || o.ts != 9 || o.left["{}\x00z"] != 1 {
		t.Fatalf("same page: %v %+v", got, o)
	}
}

// The schedule: in the hour podtail is killed every 10 minutes and Loki
// restarted twice, never at once; in 5 minutes every 100 s; neither in
// the RSS windows' last sample.
func TestSchedule(t *testing.T) {
	kills, lokis := schedule(time.Hour)
	if want := []time.Duration{15 * time.Minute, 25 * time.Minute, 35 * time.Minute, 45 * time.Minute, 55 * time.Minute}; !reflect.DeepEqual(kills, want) {
		t.Errorf("hour: kills %v", kills)
	}
	if want := []time.Duration{22*time.Minute + 30*time.Second, 42*time.Minute + 30*time.Second}; !reflect.DeepEqual(lokis, want) {
		t.Errorf("hour: Loki %v", lokis)
	}
	kills, lokis = schedule(5 * time.Minute)
	if want := []time.Duration{100 * time.Second, 200 * time.Second}; !reflect.DeepEqual(kills, want) {
		t.Errorf("5 min: kills %v", kills)
	}
	if want := []time.Duration{125 * time.Second, 225 * time.Second}; !reflect.DeepEqual(lokis, want) {
		t.Errorf("5 min: Loki %v", lokis)
	}
}

// The RSS windows' medians, and the ratio.
func TestWindowMedian(t *testing.T) {
	var ss []Sample
	for i, v := range []float64{10, 30, 20, 40, 35, 33, 60} {
		ss = append(ss, Sample{At: time.Duration(i*10) * time.Second, RSS: v})
	}
	rss := func(s Sample) float64 { return s.RSS }
	if m := window(ss, 0, 30*time.Second, rss); m != 30 { // 30 20 40
		t.Errorf("median %v", m)
	}
	if m := window(ss, 30*time.Second, 60*time.Second, rss); m != 35 { // 35 33 60
		t.Errorf("median %v", m)
	}
	if r := ratio(35, 30); r < 1.16 || r > 1.17 {
		t.Errorf("ratio %v", r)
	}
}

// podtail's log read back: this run's event ages, the containers it
// learned of after their log was gone, its warnings by message.
func TestDiagnose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podtail.log")
	log := `### soak: podtail start 1 (first) at x
{"level":"debug","msg":"event","action":"create","container":"soak-r1-c00006","age":68.0}
{"level":"debug","msg":"event","action":"create","container":"other-c00007","age":99.0}
{"level":"debug","msg":"event","action":"start","container":"soak-r1-c00006","age":0.5}
{"level":"info","msg":"container gone before its log could be opened (or it has no k8s-file log)","container":"soak-r1-c00006"}
{"level":"warn","msg":"Push failed; retrying"}
{"level":"warn","msg":"Push failed; retrying"}
{"level":"error","msg":"positions cannot be written"}
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	d := diagnose(path, "r1")
	if !reflect.DeepEqual(d.EventAges, []float64{0.5, 68}) || !d.Gone["c00006"] || len(d.Gone) != 1 {
		t.Fatalf("%+v", d)
	}
	if got := d.topMessages(5); !reflect.DeepEqual(got, []string{"warn: Push failed; retrying ×2", "error: positions cannot be written ×1"}) {
		t.Fatalf("%q", got)
	}
	l := NewLedger()
	l.Expect(Key{"t", "stdout", "c00006"}, "churn", 10)
	l.Expect(Key{"t", "stdout", "c00007"}, "churn", 10)
	if lines, writers := d.goneLines(l.Check()); lines != 10 || writers != 1 {
		t.Fatalf("%d lines of %d writers", lines, writers)
	}
}
