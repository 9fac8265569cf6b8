package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// The workload is what the bench claims: the seed's layout, zap JSON of
// 200–260 bytes, ts inside the window, and the level mix.
func TestGenerateWorkload(t *testing.T) {
	root := t.TempDir()
	from := time.Unix(1_700_000_000, 0)
	w, err := Generate(root, shapeFor(20, 2000), from)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Files) != 20 || w.Lines != 40000 {
		t.Fatalf("got %d files, %d lines; want 20, 40000", len(w.Files), w.Lines)
	}
	if w.MinLine < 200 || w.MaxLine > 260 {
		t.Errorf("line lengths %d–%d, want within 200–260", w.MinLine, w.MaxLine)
	}
	levels := map[string]int{}
	var total int64
	for _, f := range w.Files {
		if _, _, err := boundLabels(root, f); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			total += int64(len(sc.Bytes()) + 1)
			var line struct {
				Level string  `json:"level"`
				TS    float64 `json:"ts"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("%s: %v: %s", f, err, sc.Bytes())
			}
			levels[line.Level]++
			ts := time.Unix(0, zapTS(sc.Bytes()))
			if ts.Before(w.TimeFrom) || ts.After(w.TimeTo) {
				t.Fatalf("ts %s outside [%s, %s]", ts, w.TimeFrom, w.TimeTo)
			}
		}
		fh.Close()
	}
	if total != w.Bytes {
		t.Errorf("files hold %d bytes, workload says %d", total, w.Bytes)
	}
	share := func(l string) float64 { return float64(levels[l]) / float64(w.Lines) * 100 }
	for l, want := range map[string]float64{"info": 80, "debug": 6, "warn": 6, "error": 8} {
		if got := share(l); got < want-1.5 || got > want+1.5 {
			t.Errorf("%s: %.1f %% of lines, want ≈ %.0f %%", l, got, want)
		}
	}
}

func TestZapFieldsByHand(t *testing.T) {
	line := []byte(`{"level":"warn","ts":1732500000.1234567,"caller":"a/b.go:1","msg":"x"}`)
	if got := zapLevelIndex(line); boundLevels[got] != "warn" {
		t.Errorf("level %q, want warn", boundLevels[got])
	}
	if got, want := zapTS(line), int64(1732500000_123456700); got != want {
		t.Errorf("ts %d, want %d", got, want)
	}
	if got := zapTS([]byte(`{"ts":1732500000}`)); got != 1732500000_000000000 {
		t.Errorf("whole seconds: %d", got)
	}
	if got := zapLevelIndex([]byte(`{"msg":"no level"}`)); boundLevels[got] != "unknown" {
		t.Errorf("no level: %q", boundLevels[got])
	}
}

// The bound reads every line and produces batches that decode back.
func TestBound(t *testing.T) {
	root := t.TempDir()
	w, err := Generate(root, shapeFor(3, 5000), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := runBound(root)
	if err != nil {
		t.Fatal(err)
	}
	if res.Lines != w.Lines || res.Bytes != w.Bytes {
		t.Errorf("bound read %d lines, %d bytes; workload %d, %d", res.Lines, res.Bytes, w.Lines, w.Bytes)
	}
	if min := w.Bytes / boundBatchBytes; res.Batches < min {
		t.Errorf("%d batches for %d bytes", res.Batches, w.Bytes)
	}
}

func TestProcFields(t *testing.T) {
	stat := []byte("1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 150 50 7 3 20 0 1 0 100 200 300 0 0")
	f, err := statFields(stat)
	if err != nil {
		t.Fatal(err)
	}
	if f[14-3] != "150" || f[17-3] != "3" || f[1] != "1" {
		t.Errorf("fields %v", f[:16])
	}
	kb, err := statusKB([]byte("Name:\tx\nVmPeak:\t  10 kB\nVmHWM:\t    2048 kB\n"), "VmHWM")
	if err != nil || kb != 2048<<10 {
		t.Errorf("VmHWM = %d, %v", kb, err)
	}
	if _, err := statusKB([]byte("Name:\tx\n"), "VmHWM"); err == nil {
		t.Error("a missing VmHWM line gave no error")
	}
	// This process: some CPU spent, some memory resident.
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu < 0 {
		t.Errorf("own cpu %s, %v", cpu, err)
	}
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("own peak rss %d, %v", rss, err)
	}
	// The test binary's own pages are file-backed, and part of the peak.
	if f, err := fileRSS(os.Getpid()); err != nil || f <= 0 || f > rss {
		t.Errorf("own file rss %d (peak %d), %v", f, rss, err)
	}
}

// The sink decodes a real push body and counts entries, tenants, streams,
// and entries that lack a level label or their line's time.
func TestSinkCounts(t *testing.T) {
	s, err := StartSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	from := time.Unix(1_700_000_000, 0)
	s.From, s.To = from, from.Add(time.Second)
	req := push.PushRequest{Streams: []push.Stream{
		{Labels: `{level="info", tenant="a"}`, Entries: []push.Entry{{Timestamp: from, Line: "one"}, {Timestamp: from.Add(time.Hour), Line: "two"}}},
		{Labels: `{tenant="a"}`, Entries: []push.Entry{{Timestamp: from, Line: "three"}}},
	}}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hr, _ := http.NewRequest(http.MethodPost, s.URL+"/loki/api/v1/push", bytes.NewReader(snappy.Encode(nil, raw)))
	hr.Header.Set("Content-Type", "application/x-protobuf")
	hr.Header.Set("X-Scope-OrgID", "a")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sink answered %d", resp.StatusCode)
	}
	got := s.Stats()
	if len(got.Samples) != 2 || !strings.Contains(got.Samples[0], `"two"`) || !strings.Contains(got.Samples[1], `"three"`) {
		t.Errorf("samples %q, want the entries two and three", got.Samples)
	}
	got.Samples = nil
	want := SinkStats{Entries: 3, Bytes: 11, Requests: 1, Untimed: 1, Unleveled: 1, Streams: 2, Tenants: 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	resp, err = http.Post(s.URL+"/loki/api/v1/push", "application/x-protobuf", strings.NewReader("not snappy"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || s.Stats().Failed != 1 {
		t.Errorf("garbage: %d, failed %d", resp.StatusCode, s.Stats().Failed)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 50; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(ds, 50); p != 25*time.Millisecond {
		t.Errorf("p50 %s", p)
	}
	if p := percentile(ds, 99); p != 50*time.Millisecond {
		t.Errorf("p99 %s", p)
	}
}

func TestParseShape(t *testing.T) {
	if s, err := parseShape("-x", "100x20000"); err != nil || s != [2]int{100, 20000} {
		t.Errorf("%v %v", s, err)
	}
	for _, bad := range []string{"100", "0x5", "ax1", "1x"} {
		if _, err := parseShape("-throughput", bad); err == nil || !strings.Contains(err.Error(), "-throughput") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestShapeIsExact(t *testing.T) {
	for _, n := range []int{1, 7, 15, 120} {
		w, err := Generate(t.TempDir(), shapeFor(n, 1), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(w.Files) != n {
			t.Errorf("asked %d files, got %d", n, len(w.Files))
		}
	}
}
