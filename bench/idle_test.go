package main

import (
	"strings"
	"testing"
	"time"
)

// Each peer's idle configuration is its files configuration and its
// containers configuration in one process: both jobs (Promtail) or both
// sets of components (Alloy) once, and one client or loki.write.
func TestIdlePeerConfigs(t *testing.T) {
	p := promtailIdleConfig("http://127.0.0.1:9", "/tmp/d", "/tmp/w", "/tmp/p.sock", "bench_x_tenant", 1234)
	for want, n := range map[string]int{
		"scrape_configs:":        1,
		"- job_name: apps":       1,
		"- job_name: containers": 1,
		"clients:":               1,
		"http_listen_port: 1234": 1,
		"__path__: /tmp/w/namespace/*/*/workplace/logs/*.log": 1,
		"host: unix:///tmp/p.sock":                            1,
	} {
		if got := strings.Count(p, want); got != n {
			t.Errorf("promtail idle config holds %q %d times, want %d:\n%s", want, got, n, p)
		}
	}
	a := alloyIdleConfig("http://127.0.0.1:9", "/tmp/w", "/tmp/p.sock", "bench_x_tenant")
	for want, n := range map[string]int{
		`loki.write "sink"`:                       1,
		`logging {`:                               1,
		`loki.source.file "apps"`:                 1,
		`loki.source.docker "containers"`:         1,
		`loki.process "apps"`:                     1,
		`loki.process "containers"`:               1,
		`forward_to = [loki.write.sink.receiver]`: 2,
	} {
		if got := strings.Count(a, want); got != n {
			t.Errorf("alloy idle config holds %q %d times, want %d:\n%s", want, got, n, a)
		}
	}
	if o, c := strings.Count(a, "{"), strings.Count(a, "}"); o != c {
		t.Errorf("alloy idle config: %d { against %d }", o, c)
	}
}

// The idle table extrapolates each tool's window to an hour, reports the
// Podman service once, and checks issue 21's idle targets against each
// peer; a failed peer gets a row saying how and no target line.
func TestIdleReport(t *testing.T) {
	row := func(tool string, cpu time.Duration, rss int64) IdleRow {
		return IdleRow{Tool: tool, Initial: 3 * time.Second, InitialCPU: time.Second, CPU: cpu, RSS: rss << 20, HWM: (rss + 5) << 20,
			FileRSS: 10 << 20, Shipped: 2000, Sink: SinkStats{Entries: 102000, Requests: 300, Streams: 1200, Tenants: 20}}
	}
	failed := row("alloy", 0, 0)
	failed.Failed = "stuck at 5 of 100200 initial entries for 1m30s"
	rep := &Report{Started: time.Now(), Idle: &Idle{Title: "1000 idle files", Window: 10 * time.Minute, Files: 1000, Containers: 200,
		ServiceCPU: 30 * time.Second,
		Rows:       []IdleRow{row("podtail", 500*time.Millisecond, 20), row("promtail", 10*time.Second, 100), failed}}}
	text := rep.String()
	for _, want := range []string{
		"# podtail vs Promtail and Alloy",
		"## idle — 1000 idle files",
		"≈ 2000 expected",
		"| podtail | 3.0 | 1.00 | 0.500 | 3.00 | 20.0 (10.0) | 25.0 | 2000 | ok: 102000 entries",
		"| promtail | 3.0 | 1.00 | 10.000 | 60.00 |",
		"| alloy | — | — | — | — | — | — | — | FAILED: stuck at 5 of 100200",
		"| Podman service (shared) | — | — | 30.000 | 180.00 |",
		"podtail ÷ Promtail: CPU at rest 0.05×, RSS at rest 0.20×",
		"idle (1000 files, 200 containers): podtail 3.00 CPU-s per hour at rest (< 10): met",
		"idle: podtail's CPU at rest 0.050× Promtail's (60.00 CPU-s per hour; ≤ 0.1×): met",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Alloy's (") {
		t.Errorf("a target line for the failed peer:\n%s", text)
	}
}
