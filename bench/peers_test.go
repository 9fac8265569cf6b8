package main

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// -tools takes alloy, and the peers run after podtail, Promtail first.
func TestPickToolsPeers(t *testing.T) {
	got, err := pickTools(map[string]bool{"alloy": true, "podtail": true, "promtail": true}, false)
	if err != nil || !slices.Equal(got, []string{"podtail", "promtail", "alloy"}) {
		t.Errorf("got %v, %v", got, err)
	}
	got, err = pickTools(map[string]bool{"alloy": true, "podtail": true}, true)
	if err != nil || !slices.Equal(got, []string{"podtail", baseTool, "alloy"}) {
		t.Errorf("with -baseline: got %v, %v", got, err)
	}
	if _, err := pickTools(map[string]bool{"vector": true}, false); err == nil || !strings.Contains(err.Error(), "alloy") {
		t.Errorf("unknown tool: %v", err)
	}
}

// Alloy's configurations carry the seed's pipeline, the tenant and the
// sink, with the regex's backslash escaped for Alloy's string syntax.
func TestAlloyConfigs(t *testing.T) {
	files := alloyFilesConfig("http://127.0.0.1:9", "/tmp/w")
	for _, want := range []string{
		`url = "http://127.0.0.1:9/loki/api/v1/push"`,
		`path_targets = [{ "__path__" = "/tmp/w/namespace/*/*/workplace/logs/*.log" }]`,
		`(?P<version>v[0-9]+)\\.log$"`,
		`source = "tenant"`,
		`values = { tenant = "", application = "", version = "" }`,
		`expressions = { level = "", ts = "", caller = "" }`,
		`format = "Unix"`,
		`stage.structured_metadata {`,
		`level = "warn"`,
	} {
		if !strings.Contains(files, want) {
			t.Errorf("files config lacks %s:\n%s", want, files)
		}
	}
	docker := alloyDockerConfig("http://127.0.0.1:9", "/tmp/p.sock", "bench_ab12cd_tenant")
	for _, want := range []string{
		`host             = "unix:///tmp/p.sock"`,
		`values = ["bench_ab12cd_tenant"]`,
		`source_labels = ["__meta_docker_container_label_bench_ab12cd_tenant"]`,
		`relabel_rules    = discovery.relabel.containers.rules`,
		`label = "tenant"`,
		`stage.structured_metadata {`,
	} {
		if !strings.Contains(docker, want) {
			t.Errorf("docker config lacks %s:\n%s", want, docker)
		}
	}
	// Every block closes: as many braces close as open.
	for name, c := range map[string]string{"files": files, "docker": docker} {
		if o, cl := strings.Count(c, "{"), strings.Count(c, "}"); o != cl {
			t.Errorf("%s config: %d { against %d }", name, o, cl)
		}
	}
}

// A peer that fails gets a row saying how, without rates; the summary and
// the ratio lines give podtail against the peers that did not fail.
func TestReportPeers(t *testing.T) {
	res := func(tool string, cpu time.Duration, rss int64) Result {
		return Result{Tool: tool, Lines: 100_000, Bytes: 23_000_000, Wall: 2 * time.Second, CPU: cpu, PeakRSS: rss << 20,
			Sink: SinkStats{Entries: 100_000, Bytes: 23_000_000 - 100_000, Requests: 10, Streams: 20, Tenants: 10}}
	}
	failed := res("alloy", 3*time.Second, 250)
	failed.Failed = failure(errors.New("alloy: stuck at 0 of 100000 entries for 1m30s (sink {Entries:0 Samples:[]}); its log x ends:\nts=x level=error err=\"Error response from daemon: | a pipe\""))
	failed.Sink = SinkStats{}
	mangled := res("alloy", 4*time.Second, 300)
	mangled.Sink.Bytes += 21
	rep := &Report{Started: time.Now(), Scenarios: []*Scenario{
		{Name: "throughput", Title: "20 files × 5000 lines: x", Results: []Result{
			res("podtail", 100*time.Millisecond, 30), res("promtail", 4*time.Second, 130), res("alloy", 5*time.Second, 300)},
			Bound: &Result{Tool: "bound", Lines: 100_000, Wall: time.Second, CPU: 50 * time.Millisecond}},
		{Name: "manyfiles", Title: "200 files × 500 lines: x", Results: []Result{res("podtail", 200*time.Millisecond, 31), mangled}},
		{Name: "containers", Title: "20 containers × 500 lines on stdout", Containers: true, Results: []Result{
			res("podtail", time.Second, 40), res("promtail", 8*time.Second, 140), failed}},
	}}
	text := rep.String()
	for _, want := range []string{
		"# podtail vs Promtail and Alloy",
		"podtail ÷ Promtail: lines/s 1.00×, lines per CPU-s 40.00×",
		"podtail ÷ Alloy: lines/s 1.00×, lines per CPU-s 50.00×",
		"| alloy | 2.00 | — | — | 3.00 | 0.00 | — | — | 250.0 | FAILED: alloy: stuck at 0 of 100000 entries",
		`err="Error response from daemon: \| a pipe"`,
		"FAILED: alloy: stuck at 0 of 100000 entries for 1m30s; its log's last line: err=",
		"(the sink: 0 of 100000 entries in 0 pushes) |",
		"## podtail against its peers",
		"| throughput | lines per CPU-s | 1,000,000 | 25,000 | 40.00× | 20,000 | 50.00× |",
		"| throughput | peak RSS MiB | 30.0 | 130.0 | 0.23× | 300.0 | 0.10× |",
		"| containers | lines per CPU-s | 100,000 | 12,500 | 8.00× | failed | — |",
		"throughput: 50.0× Alloy's lines per CPU-second (≥ 20×): met",
		"containers (20 containers × 500 lines on stdout): peak RSS 40.0 MiB (≤ 40 MiB; Alloy's not measured): met",
		"| alloy | 2.00 | 50,000 | 11.5 | 4.00 | 40.00 | 25,000 | 300.0 | CHECK: +21 bytes in the lines (text added or lost); 20 streams",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "alloy reaches"); n != 1 {
		t.Errorf("alloy's share of the bound given %d times, want once (throughput, where it did not fail):\n%s", n, text)
	}
}

// The version -X gives Alloy is the one bench/alloybuild/go.mod requires.
func TestAlloyVersion(t *testing.T) {
	gomod, err := os.ReadFile("alloybuild/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := alloyVersion.FindSubmatch(gomod)
	if m == nil || !strings.HasPrefix(string(m[1]), "v1.") {
		t.Fatalf("no github.com/grafana/alloy version in alloybuild/go.mod: %q", m)
	}
	for _, mod := range []string{"require github.com/grafana/alloy v1.2.3\n", "require (\n\tgithub.com/grafana/alloy v1.2.3\n)\n"} {
		if m := alloyVersion.FindStringSubmatch(mod); m == nil || m[1] != "v1.2.3" {
			t.Errorf("%q: %q", mod, m)
		}
	}
	if m := alloyVersion.FindStringSubmatch("require github.com/grafana/alloy/syntax v0.1.2 // indirect\n"); m != nil {
		t.Errorf("the syntax module taken for Alloy's: %q", m)
	}
}
