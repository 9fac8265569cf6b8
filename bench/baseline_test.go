package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// -baseline adds podtail-base beside podtail; naming it without a
// baseline, or giving a baseline nothing runs beside, is an error.
func TestPickTools(t *testing.T) {
	set := func(xs ...string) map[string]bool {
		m := map[string]bool{}
		for _, x := range xs {
			m[x] = true
		}
		return m
	}
	for _, c := range []struct {
		named    map[string]bool
		baseline bool
		want     []string
		err      string
	}{
		{set("promtail", "podtail"), false, []string{"podtail", "promtail"}, ""},
		{set("promtail", "podtail"), true, []string{"podtail", "podtail-base", "promtail"}, ""},
		{set("podtail-base", "podtail"), true, []string{"podtail", "podtail-base"}, ""},
		{set("podtail-base"), true, []string{"podtail-base"}, ""},
		{set("podtail", "podtail-base"), false, nil, "-baseline"},
		{set("promtail"), true, nil, "-tools names neither"},
		{set("podtail", "fluentbit"), false, nil, `unknown tool "fluentbit"`},
	} {
		got, err := pickTools(c.named, c.baseline)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v, baseline %v: error %v, want one saying %q", c.named, c.baseline, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v, baseline %v: %v, %v; want %v", c.named, c.baseline, got, err, c.want)
		}
	}
}

func TestApartOdds(t *testing.T) {
	for _, c := range [][3]int{{3, 3, 10}, {5, 5, 126}, {2, 2, 3}, {2, 3, 5}} {
		if got := apartOdds(c[0], c[1]); got != c[2] {
			t.Errorf("%d and %d runs: 1 in %d, want 1 in %d", c[0], c[1], got, c[2])
		}
	}
}

func TestRoundOrder(t *testing.T) {
	turn := []string{"podtail", "podtail-base"}
	var firsts []string
	for i := range 4 {
		firsts = append(firsts, roundOrder(turn, i)[0])
	}
	if want := []string{"podtail", "podtail-base", "podtail", "podtail-base"}; !reflect.DeepEqual(firsts, want) {
		t.Errorf("first of each round %v, want %v", firsts, want)
	}
	if turn[0] != "podtail" {
		t.Error("roundOrder changed its argument")
	}
	if got := roundOrder([]string{"podtail"}, 1); !reflect.DeepEqual(got, []string{"podtail"}) {
		t.Errorf("podtail alone: %v", got)
	}
}

// The report shows podtail-base's rows in the tables and an A/B section
// with the ratios new/base, and nothing of it without a baseline.
func TestABSection(t *testing.T) {
	cpu := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	res := func(tool string, c float64, rss int64, runs int) Result {
		return Result{Tool: tool, Lines: 1_000_000, Bytes: 230_000_000, Wall: time.Second, CPU: cpu(c), PeakRSS: rss << 20,
			Runs: runs, CPUMin: cpu(c - 0.05), CPUMax: cpu(c + 0.05)}
	}
	bound := Result{Tool: "bound", Lines: 1_000_000, Wall: time.Second, CPU: cpu(0.5)}
	rep := &Report{Baseline: "abc1234 (/tmp/pt-a)", Scenarios: []*Scenario{
		{Name: "throughput", Title: "t", Bound: &bound, Results: []Result{res("podtail", 1, 20, 3), res("podtail-base", 2, 40, 3)}},
		{Name: "containers", Title: "c", Containers: true, Results: []Result{res("podtail", 1, 20, 0), res("podtail-base", 1, 20, 0)}},
	}, Latencies: []Latency{
		{Tool: "podtail", Starts: 10, Seen: 10, P50: 100 * time.Millisecond, P99: 200 * time.Millisecond},
		{Tool: "podtail-base", Starts: 10, Seen: 10, P50: 200 * time.Millisecond, P99: 400 * time.Millisecond},
	}}
	out := rep.String()
	for _, want := range []string{
		"| podtail-base | 1.00 |",
		"podtail-base reaches 25.0 % of the bound",
		"## A/B — podtail against podtail-base",
		"podtail-base is abc1234 (/tmp/pt-a)",
		"| throughput | lines per CPU-s | 1,000,000 | 500,000 | 2.00× |",
		"| throughput | peak RSS MiB | 20.0 | 40.0 | 0.50× |",
		"| throughput | share of the bound | 50.0 % | 25.0 % | 2.00× |",
		"| containers | lines per CPU-s | 1,000,000 | 1,000,000 | 1.00× |",
		"| discovery | p99 latency | 200ms | 400ms | 0.50× |",
		"throughput: CPU of the runs: podtail 0.95–1.05 s, podtail-base 1.95–2.05 s: apart, every podtail run took less CPU",
		"(identical binaries' runs fall apart 1 time in 10 with 3 and 3 runs)",
		"containers: one run each",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| containers | share of the bound") {
		t.Error("a share of the bound where the scenario has none")
	}

	rep.Baseline = ""
	rep.Scenarios[0].Results = rep.Scenarios[0].Results[:1]
	rep.Scenarios[1].Results = rep.Scenarios[1].Results[:1]
	rep.Latencies = rep.Latencies[:1]
	if out := rep.String(); strings.Contains(out, "A/B") || strings.Contains(out, "podtail-base") {
		t.Errorf("without a baseline the report mentions it:\n%s", out)
	}
}
