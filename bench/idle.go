package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// The idle scenario (issue 21, "idle cost"): what each collector costs at
// rest on a host where nothing much happens, which is most hosts most of
// the time. 1,000 log files in the seed's layout, written before the tools
// start and never again, and 200 containers that print one zap-like line a
// minute. Every tool (podtail, Promtail, Alloy; podtail-base with
// -baseline) runs AT THE SAME TIME over the same sources, each with its own
// state directory and its own sink: CPU time is per process (from
// /proc/<pid>/stat), so running them together costs no accuracy and saves
// two windows of wall time. Once every tool's sink has counted the initial
// lines (the files' and each container's first), and a settling pause has
// passed, the window starts: each tool's CPU over it, extrapolated to an
// hour, with VmRSS at the end and VmHWM. The Podman service's CPU over the
// window is reported once: with the tools running together it cannot be
// attributed, and it is mostly the peers' (they follow 200 containers
// through its logs API; podtail reads the k8s-file logs itself and only
// listens to its events).

// idleOptions are the idle scenario's flags.
type idleOptions struct {
	files, containers int
	lines             int // initial lines per file
	window, settle    time.Duration
	profile           time.Duration // podtail's CPU profile after the window (0: none)
}

// flags registers the idle scenario's flags.
func (opt *idleOptions) flags() {
	flag.IntVar(&opt.files, "idle-files", 1000, "idle scenario: log files in the seed's layout, written once before the tools start")
	flag.IntVar(&opt.lines, "idle-lines", 100, "idle scenario: lines each idle file holds (the initial read)")
	flag.IntVar(&opt.containers, "idle-containers", 200, "idle scenario: containers printing one line a minute")
	flag.DurationVar(&opt.window, "idle-window", 10*time.Minute, "idle scenario: the window each tool's CPU is measured over, after its initial read")
	flag.DurationVar(&opt.settle, "idle-settle", 30*time.Second, "idle scenario: pause between the last tool's initial read and the window (GC, timers settling)")
	flag.DurationVar(&opt.profile, "idle-profile", 2*time.Minute, "idle scenario: CPU-profile podtail for this long after the window (an idle profile has few samples: keep it long); 0: none")
}

// quick shortens the window and settling pause for -quick, unless given.
func (opt *idleOptions) quick(given map[string]bool) {
	if !given["idle-window"] {
		opt.window = 2 * time.Minute
	}
	if !given["idle-settle"] {
		opt.settle = 10 * time.Second
	}
	if !given["idle-profile"] {
		opt.profile = 30 * time.Second
	}
}

// Idle is the idle scenario's outcome.
type Idle struct {
	Title      string
	Window     time.Duration
	Files      int
	Containers int
	Rows       []IdleRow
	ServiceCPU time.Duration // the Podman service's over the window
	Profile    string        // podtail's CPU profile after the window
	Top        []string
}

// IdleRow is one tool at rest.
type IdleRow struct {
	Tool       string
	Initial    time.Duration // start → the sink counted the initial lines
	InitialCPU time.Duration // CPU up to the window
	CPU        time.Duration // over the window
	RSS, HWM   int64         // VmRSS at the window's end, VmHWM
	FileRSS    int64         // RssFile at the window's end (binary pages)
	Shipped    int64         // entries the sink counted during the window
	Sink       SinkStats
	Failed     string
}

// PerHour is the window's CPU extrapolated to an hour.
func (r IdleRow) PerHour(window time.Duration) float64 {
	return r.CPU.Seconds() * float64(time.Hour) / float64(window)
}

// idleTool is one running tool of the idle scenario.
type idleTool struct {
	row   IdleRow
	p     *proc
	sink  *Sink
	start time.Time
	done  bool
	cpu0  time.Duration
	n0    int64
}

// idleLine is what each idle container prints once a minute: a zap
// production line (level, ts, caller, msg) with the container's own count,
// its ts whole seconds from busybox's date.
const idleLine = `i=0; while :; do echo "{\"level\":\"info\",\"ts\":$(date +%s),\"caller\":\"app/main.go:12\",\"msg\":\"still here\",\"seq\":$i}"; i=$((i+1)); sleep 60; done`

// idle runs the idle scenario on a Podman service of its own.
func (b *bench) idle(ctx context.Context) error {
	o := b.o.idle
	image, err := mustGetenv("PODTAIL_TEST_IMAGE")
	if err != nil {
		return err
	}
	root := filepath.Join(b.dir, "idle-logs")
	logf("idle: generating %d files × %d lines", o.files, o.lines)
	w, err := Generate(root, shapeFor(o.files, o.lines), time.Now().Add(-time.Hour))
	if err != nil {
		return fmt.Errorf("generating the idle files: %w", err)
	}
	if !b.o.keep {
		defer os.RemoveAll(root)
	}
	sock := filepath.Join(b.dir, "idle-podman.sock")
	svc, err := testbed.StartPodmanService(sock)
	if err != nil {
		return fmt.Errorf("podman service: %w", err)
	}
	defer svc.Stop()
	defer b.containers.removeAll()
	tenantLabel := "bench_" + b.runID + "_tenant"
	logf("idle: starting %d containers that print a line a minute", o.containers)
	startAt := time.Now()
	err = startContainers(ctx, &b.containers, "bench-"+b.runID+"-idle", tenantLabel, "k8s-file", o.containers,
		func(int) []string { return []string{image, "sh", "-c", idleLine} })
	if err != nil {
		return fmt.Errorf("starting the idle containers: %w", err)
	}
	logf("idle: started in %s", time.Since(startAt).Round(time.Millisecond))

	res := &Idle{Window: o.window, Files: o.files, Containers: o.containers,
		Title: fmt.Sprintf("%d idle files (%d lines each, read first) and %d containers printing a line a minute; the tools ran together", o.files, o.lines, o.containers)}
	b.rep.Idle = res
	// The initial read: every file's lines and at least each container's
	// first line (the ones printed since come on top).
	expect := w.Lines + int64(o.containers)
	pprofListen := ""
	var tools []*idleTool
	defer func() {
		for _, t := range tools {
			t.p.stop()
			t.sink.Close()
		}
	}()
	for _, tool := range b.o.tools {
		dir, err := b.toolDir("idle", tool)
		if err != nil {
			return err
		}
		sink, err := StartSink()
		if err != nil {
			return err
		}
		sink.Forward = b.forward
		var start func(sinkURL, dir string) (*proc, error)
		if isPodtail(tool) {
			cfg := podtailConfig{StaticGlob: filepath.Join(root, "namespace", "*", "*", "workplace", "logs"), Socket: sock, TenantLabel: tenantLabel}
			if tool == "podtail" && o.profile > 0 {
				// Only registers the handlers: no cost until the profile is fetched, after the window.
				cfg.Listen, cfg.Pprof = fmt.Sprintf("127.0.0.1:%d", testbed.FreePort()), true
				pprofListen = cfg.Listen
			}
			start = b.startPodtail(tool, cfg)
		} else {
			start = b.idlePeer(tool, root, sock, tenantLabel)
		}
		t := &idleTool{row: IdleRow{Tool: tool}, sink: sink, start: time.Now()}
		if t.p, err = start(sink.URL, dir); err != nil {
			sink.Close()
			return fmt.Errorf("starting %s: %w", tool, err)
		}
		tools = append(tools, t)
	}
	logf("idle: %d tools started; waiting for each to count %d initial entries", len(tools), expect)
	if err := idleInitial(ctx, tools, expect, b.o.stall); err != nil {
		return err
	}
	logf("idle: initial reads done; settling for %s", o.settle)
	if err := sleepCtx(ctx, o.settle); err != nil {
		return err
	}
	svc0, err := procCPU(svc.Cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("podman service: %w", err)
	}
	for _, t := range tools {
		if t.row.Failed == "" {
			t.cpu0, _ = procCPU(t.p.pid())
			t.row.InitialCPU = t.cpu0
			t.n0 = t.sink.Entries()
		}
	}
	logf("idle: measuring over %s", o.window)
	if err := sleepCtx(ctx, o.window); err != nil {
		return err
	}
	svc1, err := procCPU(svc.Cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("podman service: %w", err)
	}
	res.ServiceCPU = svc1 - svc0
	for _, t := range tools {
		t.row.endOfWindow(t)
		res.Rows = append(res.Rows, t.row)
		if t.row.Failed == "" {
			logf("idle: %s: %.2f CPU-s over %s (%.1f per hour), RSS %.1f MiB, peak %.1f MiB, %d entries shipped",
				t.row.Tool, t.row.CPU.Seconds(), o.window, t.row.PerHour(o.window), inMiB(t.row.RSS), inMiB(t.row.HWM), t.row.Shipped)
		}
	}
	if pprofListen != "" {
		if err := b.idleProfile(ctx, res, pprofListen); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

// idleInitial waits until each tool's sink has counted expect entries,
// marking a tool failed when it exits or makes no progress for stall.
func idleInitial(ctx context.Context, tools []*idleTool, expect int64, stall time.Duration) error {
	type progress struct {
		n  int64
		at time.Time
	}
	last := map[*idleTool]progress{}
	for {
		pending := 0
		for _, t := range tools {
			if t.done {
				continue
			}
			n := t.sink.Entries()
			switch {
			case n >= expect:
				t.done, t.row.Initial = true, t.sink.Last().Sub(t.start)
				logf("idle: %s: initial read in %.1f s", t.row.Tool, t.row.Initial.Seconds())
			case t.p.exited():
				t.done = true
				t.row.Failed = fmt.Sprintf("exited at %d of %d initial entries; its log's last line: %s", n, expect, lastLine(t.p.tail(), 400))
			case last[t].n != n || last[t].at.IsZero():
				last[t] = progress{n, time.Now()}
				pending++
			case time.Since(last[t].at) > stall:
				t.done = true
				t.row.Failed = fmt.Sprintf("stuck at %d of %d initial entries for %s; its log's last line: %s", n, expect, stall, lastLine(t.p.tail(), 400))
			default:
				pending++
			}
			if t.row.Failed != "" {
				logf("idle: %s failed: %s", t.row.Tool, t.row.Failed)
				if isPodtail(t.row.Tool) {
					return fmt.Errorf("%s: %s", t.row.Tool, t.row.Failed)
				}
			}
		}
		if pending == 0 {
			return nil
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// endOfWindow takes a tool's figures at the window's end: its CPU since
// the window's start, its memory, and what its sink counted meanwhile.
func (r *IdleRow) endOfWindow(t *idleTool) {
	r.Sink = t.sink.Stats()
	if r.Failed != "" {
		return
	}
	if t.p.exited() {
		r.Failed = "exited during the window; its log's last line: " + lastLine(t.p.tail(), 400)
		return
	}
	cpu, err := procCPU(t.p.pid())
	if err != nil {
		r.Failed = err.Error()
		return
	}
	r.CPU = cpu - t.cpu0
	r.Shipped = r.Sink.Entries - t.n0
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", t.p.pid()))
	if err != nil {
		r.Failed = fmt.Sprintf("memory of %s: %v", r.Tool, err)
		return
	}
	for key, dst := range map[string]*int64{"VmRSS": &r.RSS, "VmHWM": &r.HWM, "RssFile": &r.FileRSS} {
		if *dst, err = statusKB(status, key); err != nil {
			r.Failed = fmt.Sprintf("memory of %s: %v", r.Tool, err)
		}
	}
}

// idlePeer starts a peer on both idle sources at once: the seed's file
// pipeline and the container pipeline, each as the file and container
// scenarios configure it, in one process.
func (b *bench) idlePeer(tool, root, sock, tenantLabel string) func(sinkURL, dir string) (*proc, error) {
	if tool == "alloy" {
		listen := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort())
		return b.startAlloy(listen, func(sinkURL string) string { return alloyIdleConfig(sinkURL, root, sock, tenantLabel) })
	}
	port := testbed.FreePort()
	return b.startPromtail(func(sinkURL, dataDir string) string {
		return promtailIdleConfig(sinkURL, dataDir, root, sock, tenantLabel, port)
	})
}

// promtailIdleConfig is Promtail's files configuration with the docker_sd
// job of its containers configuration added: both have the same server,
// positions and client, so the second's scrape_configs list is appended.
func promtailIdleConfig(sinkURL, dataDir, root, sock, tenantLabel string, port int) string {
	const jobs = "scrape_configs:\n"
	docker := promtailDockerConfig(sinkURL, dataDir, sock, tenantLabel, port)
	return promtailFilesConfig(sinkURL, dataDir, root, port) + docker[strings.Index(docker, jobs)+len(jobs):]
}

// alloyIdleConfig is Alloy's files configuration with the components of
// its containers configuration added (their names differ), sharing the
// one loki.write.
func alloyIdleConfig(sinkURL, root, sock, tenantLabel string) string {
	return alloyFilesConfig(sinkURL, root) + strings.TrimPrefix(alloyDockerConfig(sinkURL, sock, tenantLabel), alloySink(sinkURL))
}

// idleProfile takes podtail's CPU profile at rest, after the window (the
// profiler's own wake-ups would otherwise count in the window), and keeps
// pprof's top entries.
func (b *bench) idleProfile(ctx context.Context, res *Idle, listen string) error {
	dir := filepath.Join(b.dir, "idle", "podtail-profile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, "podtail.idle.cpu.pprof")
	secs := max(1, int(b.o.idle.profile.Seconds()))
	logf("idle: profiling podtail at rest for %d s", secs)
	if err := fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", listen, secs), path); err != nil {
		return err
	}
	res.Profile = path
	top, err := pprofTop(ctx, b.podtail, path)
	if err != nil {
		return err
	}
	res.Top = top
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func inMiB(n int64) float64 { return float64(n) / (1 << 20) }

// section is the idle scenario's table in the report.
func (res *Idle) section(b *strings.Builder) {
	fmt.Fprintf(b, "\n## idle — %s\n\n", res.Title)
	expect := float64(res.Containers) * res.Window.Minutes()
	fmt.Fprintf(b, "CPU over a %s window that starts once every tool's sink has counted the initial lines (and a settling pause), extrapolated to an hour; "+
		"CPU per process from /proc, so the tools running together does not mix their figures. RSS: VmRSS at the window's end (in brackets its file-backed part, "+
		"mostly the binary's pages), peak: VmHWM (the initial read's). Entries shipped in the window: ≈ %.0f expected (a line a minute per container).\n\n",
		res.Window, expect)
	b.WriteString("| tool | initial read s | CPU s until the window | CPU s in the window | CPU-s per hour | RSS MiB (binary) | peak RSS MiB | entries shipped in the window | checks |\n|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range res.Rows {
		if r.Failed != "" {
			fmt.Fprintf(b, "| %s | — | — | — | — | — | — | — | %s |\n", r.Tool,
				cell(fmt.Sprintf("FAILED: %s (the sink: %d entries in %d pushes)", r.Failed, r.Sink.Entries, r.Sink.Requests)))
			continue
		}
		fmt.Fprintf(b, "| %s | %.1f | %.2f | %.3f | %.2f | %.1f (%.1f) | %.1f | %d | %s |\n", r.Tool, r.Initial.Seconds(), r.InitialCPU.Seconds(),
			r.CPU.Seconds(), r.PerHour(res.Window), inMiB(r.RSS), inMiB(r.FileRSS), inMiB(r.HWM), r.Shipped, r.checks())
	}
	fmt.Fprintf(b, "| Podman service (shared) | — | — | %.3f | %.2f | — | — | — | the peers follow every container through its logs API; podtail reads the k8s-file logs itself and only subscribes to its events |\n",
		res.ServiceCPU.Seconds(), res.ServiceCPU.Seconds()*float64(time.Hour)/float64(res.Window))
	if pt := res.row("podtail"); pt != nil {
		b.WriteString("\n")
		for _, peer := range []string{"promtail", "alloy"} {
			if pr := res.row(peer); pr != nil {
				fmt.Fprintf(b, "podtail ÷ %s: CPU at rest %s, RSS at rest %s\n", peerNames[peer], ratio(pt.CPU.Seconds(), pr.CPU.Seconds()), ratio(float64(pt.RSS), float64(pr.RSS)))
			}
		}
	}
	if len(res.Top) > 0 {
		fmt.Fprintf(b, "\n### CPU profile of podtail at rest, after the window (%s), top 15\n\n```\n", res.Profile)
		for _, t := range res.Top {
			b.WriteString(t)
			b.WriteString("\n")
		}
		b.WriteString("```\n")
	}
}

// checks says whether the sink saw what it should have: no failed pushes,
// every entry with a level label and a tenant.
func (r IdleRow) checks() string {
	var bad []string
	for _, c := range []struct {
		n    int64
		what string
	}{{r.Sink.Failed, "failed pushes"}, {r.Sink.Unleveled, "without level label"}, {r.Sink.NoTenant, "without tenant"}} {
		if c.n != 0 {
			bad = append(bad, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	s := fmt.Sprintf("%d entries, %d streams, %d tenants, %d pushes", r.Sink.Entries, r.Sink.Streams, r.Sink.Tenants, r.Sink.Requests)
	if len(bad) == 0 {
		return "ok: " + s
	}
	return cell("CHECK: " + strings.Join(bad, ", ") + "; " + s + "; e.g. " + strings.Join(r.Sink.Samples, "; "))
}

// row is tool's row, nil when it did not run or failed.
func (res *Idle) row(tool string) *IdleRow {
	for i := range res.Rows {
		if res.Rows[i].Tool == tool && res.Rows[i].Failed == "" {
			return &res.Rows[i]
		}
	}
	return nil
}

// targets are issue 21's idle targets, where this run measured them:
// podtail's CPU per hour at rest under 10 s and at most a tenth of each
// peer's.
func (res *Idle) targets(verdict func(bool) string) []string {
	pt := res.row("podtail")
	if pt == nil {
		return nil
	}
	h := pt.PerHour(res.Window)
	lines := []string{fmt.Sprintf("idle (%d files, %d containers): podtail %.2f CPU-s per hour at rest (< 10): %s", res.Files, res.Containers, h, verdict(h < 10))}
	for _, peer := range []string{"promtail", "alloy"} {
		if pr := res.row(peer); pr != nil {
			f := pt.CPU.Seconds() / pr.CPU.Seconds()
			lines = append(lines, fmt.Sprintf("idle: podtail's CPU at rest %.3f× %s's (%.2f CPU-s per hour; ≤ 0.1×): %s", f, peerNames[peer], pr.PerHour(res.Window), verdict(f <= 0.1)))
		}
	}
	return lines
}
