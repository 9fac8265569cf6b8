package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The capacity model's push term, measured (docs/capacity.md): at the
// defaults (batch_wait 500ms, batch_size 1MiB) a tenant whose lines keep
// coming sends about 1/batch_wait pushes a second, plus one per batch_size
// of bytes, however many lines that is; one logging less sends fewer, and
// one that logs nothing none. Also podtail's CPU per entry at these
// moderate rates, logged for the model. Three tenants at 2, 100 and 1,000 lines a second from a zap app
// (each line to its file and to stdout: two entries) for 20 s.
func TestPushesPerTenantFollowTheModel(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "batching is the sink's, whatever the log driver")
	p := startPodtail(t, podtailOpts{batchWait: "500ms", logLevel: "info"})
	const (
		batchWait = 500 * time.Millisecond // podtail's default
		batchSize = 1 << 20
		warm      = 4 * time.Second
		window    = 20 * time.Second
	)
	rates := []int{2, 100, 1000}
	tenants := make([]string, len(rates))
	for i, rate := range rates {
		tenants[i] = name(fmt.Sprintf("cap%d", rate))
		lines := rate * int((warm + window + 10*time.Second).Seconds())
		runZapApp(t, tenants[i]+"-app", tenants[i], "app", "v1", appDir(t, tenants[i], "app"),
			fmt.Sprintf("-n %d -rate %d -echo c- -hold 30m", lines, rate))
	}
	quiet := name("capquiet") // has a container, writes nothing after its first line
	runContainer(t, quiet+"-app", quiet, "app", "v1", "echo one; exec sleep 3600")
	for _, tn := range append([]string{quiet}, tenants...) {
		waitAcked(t, p, tn, 1, 30*time.Second)
	}
	time.Sleep(warm)

	type sample struct{ pushes, bytes, entries float64 }
	read := func() []sample {
		out := make([]sample, 0, len(tenants)+1)
		for _, tn := range append(tenants, quiet) {
			out = append(out, sample{
				pushes:  p.metric("podtail_loki_push_duration_seconds_count", "tenant", tn),
				bytes:   p.metric("podtail_loki_bytes_sent_total", "tenant", tn),
				entries: p.metric("podtail_loki_entries_sent_total", "tenant", tn),
			})
		}
		return out
	}
	cpu0, before, start := cpuSeconds(t, p), read(), time.Now()
	time.Sleep(window)
	cpu1, after, took := cpuSeconds(t, p), read(), time.Since(start).Seconds()

	var entries float64
	for i, tn := range append(tenants, quiet) {
		d := sample{after[i].pushes - before[i].pushes, after[i].bytes - before[i].bytes, after[i].entries - before[i].entries}
		entries += d.entries
		perS := d.pushes / took
		model := 1/batchWait.Seconds() + d.bytes/took/batchSize
		t.Logf("%s: %.0f entries/s, %.0f B/s, %.2f pushes/s (model %.2f), %.0f entries a push",
			tn, d.entries/took, d.bytes/took, perS, model, d.entries/max(d.pushes, 1))
		if tn == quiet {
			if d.pushes != 0 {
				t.Errorf("%s wrote nothing in the window but sent %.0f pushes", tn, d.pushes)
			}
			continue
		}
		// Above the model would mean a push per read or per line. Below it:
		// pushes wait for each other (one in flight per tenant), and a
		// tenant whose lines come further apart than batch_wait/10 (here
		// 2 a second) leaves gaps in which no batch is open.
		sparse := d.entries/took < 10/batchWait.Seconds()
		if perS > model*1.15 || (!sparse && perS < model*0.6) {
			t.Errorf("%s: %.2f pushes/s, want about %.2f (1/batch_wait + bytes/batch_size)", tn, perS, model)
		}
	}
	t.Logf("podtail: %.3f CPU-s for %.0f entries over %.0f s: %.1f µs an entry, %.1f%% of a core",
		cpu1-cpu0, entries, took, (cpu1-cpu0)/max(entries, 1)*1e6, (cpu1-cpu0)/took*100)
}

// cpuSeconds is p's user + system CPU time so far, from /proc.
func cpuSeconds(t *testing.T, p *podtailProc) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: utime and stime are
	// the 12th and 13th of them, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}
