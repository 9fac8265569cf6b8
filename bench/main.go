// Command bench measures podtail against Promtail and Grafana Alloy on this
// machine, in one run, on the same inputs and the same Loki-protocol sink,
// and against the necessary-work bound (one tight loop doing only what the
// seed's pipeline requires). `make bench` runs it through the test bed:
//
//	e2e/testbed/testbed.sh go run ./bench -podtail bin/podtail [-quick] [-scenarios throughput,manyfiles,containers,journald,discovery,idle]
//
// With -baseline PATH (make bench-ab builds one from a git revision) a
// second podtail binary runs as the tool podtail-base beside podtail in
// every scenario, on the same inputs, and an A/B section compares the two
// (baseline.go).
//
// Scenarios: throughput (100 files × 20,000 zap lines), manyfiles (1,000
// files × 1,000 lines), containers (200 containers printing to stdout,
// podtail's k8s-file reading against Promtail's docker_sd on the same Podman
// socket and Alloy's discovery.docker + loki.source.docker on it, the
// Podman service's CPU counted for each) and discovery (50 container
// starts, `podman run -d` returning → first line at the sink). A peer that
// fails a scenario gets a row saying how, and the bench goes on.
// Tools run one after the other, each from fresh positions, and each is
// measured until the sink has counted every line: wall time, CPU time from
// /proc/<pid>/stat, peak RSS (VmHWM). A CPU profile of podtail in the
// throughput scenario (a separate, unmeasured run with server.pprof) ends
// the report.
//
// The idle scenario (idle.go; not in the default list: its window alone is
// -idle-window, 10 minutes, so run it as `-scenarios idle`) is the cost at
// rest: 1,000 log files in the seed's layout written once (-idle-files,
// -idle-lines) and 200 containers printing a line a minute
// (-idle-containers). Its tools run at the same time, each with its own
// state and sink (CPU time is per process); once every sink has counted the
// initial lines and -idle-settle has passed, each tool's CPU over the
// window, extrapolated to an hour, its VmRSS and VmHWM, and the Podman
// service's CPU (once: it cannot be attributed); then a CPU profile of
// podtail at rest (-idle-profile).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

type options struct {
	podtail, promtail, alloy, repo string
	dir, out                       string
	baseline                       string // a second podtail binary, run as podtail-base
	scenarios                      map[string]bool
	tools                          []string
	throughput, manyfiles          [2]int
	containers, containerLines     int
	starts                         int
	startInterval                  time.Duration
	loki, profile, keep            bool
	runs                           int
	stall                          time.Duration
	idle                           idleOptions // idle.go
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-internal-bound" {
		res, err := runBound(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	var o options
	var scen, tools, tp, mf string
	var quick bool
	flag.StringVar(&o.podtail, "podtail", "bin/podtail", "podtail binary (make bench builds it)")
	flag.StringVar(&o.baseline, "baseline", "", "a second podtail binary (e.g. the previous commit's: make bench-ab) to run as the tool podtail-base wherever podtail runs, in turn with its runs, and compare with it in an A/B section")
	flag.StringVar(&o.promtail, "promtail", "", "Promtail binary; empty: build bench/promtailbuild, cached in ~/.cache/podtail")
	flag.StringVar(&o.alloy, "alloy", "", "Grafana Alloy binary; empty: build bench/alloybuild, cached in ~/.cache/podtail (cold: ~15 minutes on 2 cores and ~6.3 GB of memory)")
	flag.StringVar(&o.repo, "repo", ".", "podtail's repository (for bench/promtailbuild and bench/alloybuild)")
	flag.StringVar(&o.dir, "dir", "", "work directory; empty: a new one under $TMPDIR, removed afterwards")
	flag.StringVar(&o.out, "out", "", "also write the report (markdown) to this file")
	flag.StringVar(&scen, "scenarios", "throughput,manyfiles,containers,journald,discovery", "scenarios to run, comma-separated (journald: the containers scenario with --log-driver journald; idle, not in the default: the tools at rest over -idle-window, idle.go)")
	flag.StringVar(&tools, "tools", "podtail,promtail,alloy", "tools to run, comma-separated: podtail, promtail, alloy, and with -baseline podtail-base (which -baseline adds wherever podtail is named)")
	flag.StringVar(&tp, "throughput", "100x20000", "throughput scenario: FILESxLINES per file")
	flag.StringVar(&mf, "manyfiles", "1000x1000", "many-files scenario: FILESxLINES per file")
	flag.IntVar(&o.containers, "containers", 200, "containers scenario: containers printing to stdout")
	flag.IntVar(&o.containerLines, "container-lines", 2500, "containers scenario: lines each container prints")
	flag.IntVar(&o.starts, "starts", 50, "discovery scenario: container starts")
	flag.DurationVar(&o.startInterval, "start-interval", time.Second, "discovery scenario: time between starts")
	flag.BoolVar(&quick, "quick", false, "small sizes (20x5000, 200x500, 20 containers × 500 lines, 10 starts; size flags given still win) for a run of a minute or two")
	flag.BoolVar(&o.loki, "loki", false, "also pass every push on to a real Loki of the test bed (the sink answers what Loki answers)")
	flag.BoolVar(&o.profile, "profile", true, "CPU-profile podtail in the throughput scenario (a separate run) and print the top entries")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.IntVar(&o.runs, "runs", 3, "file scenarios: runs of podtail (and of podtail-base, with -baseline) and of the bound, taken in turn; the report shows the median run by CPU (this machine's speed wanders by a fifth from minute to minute)")
	flag.DurationVar(&o.stall, "stall", 90*time.Second, "give up on a tool that makes no progress for this long")
	o.idle.flags()
	flag.Parse()

	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, x := range strings.Split(s, ",") {
			if x = strings.TrimSpace(x); x != "" {
				m[x] = true
			}
		}
		return m
	}
	o.scenarios = set(scen)
	for s := range o.scenarios {
		switch s {
		case "throughput", "manyfiles", "containers", "journald", "discovery", "idle":
		default:
			fail(fmt.Errorf("-scenarios: unknown scenario %q (throughput, manyfiles, containers, journald, discovery, idle)", s))
		}
	}
	var err error
	if o.tools, err = pickTools(set(tools), o.baseline != ""); err != nil {
		fail(err)
	}
	if quick { // sizes given as flags still win
		given := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
		pick := func(name string, dst *int, v int) {
			if !given[name] {
				*dst = v
			}
		}
		if !given["throughput"] {
			tp = "20x5000"
		}
		if !given["manyfiles"] {
			mf = "200x500"
		}
		pick("containers", &o.containers, 20)
		pick("container-lines", &o.containerLines, 500)
		pick("starts", &o.starts, 10)
		o.idle.quick(given)
	}
	if o.runs < 1 {
		fail(fmt.Errorf("-runs: %d is not a count of runs", o.runs))
	}
	if o.throughput, err = parseShape("-throughput", tp); err != nil {
		fail(err)
	}
	if o.manyfiles, err = parseShape("-manyfiles", mf); err != nil {
		fail(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if rep != nil {
		text := rep.String()
		fmt.Print(text)
		if o.out != "" {
			if werr := os.WriteFile(o.out, []byte(text), 0o644); werr != nil {
				logf("%v", werr)
			}
		}
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func parseShape(flagName, s string) ([2]int, error) {
	a, b, ok := strings.Cut(s, "x")
	f, err1 := strconv.Atoi(a)
	l, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || f < 1 || l < 1 {
		return [2]int{}, fmt.Errorf("%s: %q is not FILESxLINES (e.g. 100x20000)", flagName, s)
	}
	return [2]int{f, l}, nil
}

// pickTools checks the tools -tools named and puts them in the order they
// run in: podtail first, podtail-base (which -baseline adds wherever podtail
// is named, the point of giving one) beside it, then the peers, Promtail
// and Alloy.
func pickTools(named map[string]bool, baseline bool) ([]string, error) {
	named = maps.Clone(named)
	for _, t := range slices.Sorted(maps.Keys(named)) {
		if !isPodtail(t) && !isPeer(t) {
			return nil, fmt.Errorf("-tools: unknown tool %q (podtail, promtail, alloy, %s)", t, baseTool)
		}
	}
	if named[baseTool] && !baseline {
		return nil, fmt.Errorf("-tools: %s is the binary -baseline names, and none was given", baseTool)
	}
	if baseline && named["podtail"] {
		named[baseTool] = true
	}
	if baseline && !named[baseTool] {
		return nil, fmt.Errorf("-baseline: %s runs wherever podtail does, and -tools names neither", baseTool)
	}
	var tools []string
	for _, t := range []string{"podtail", baseTool, "promtail", "alloy"} {
		if named[t] {
			tools = append(tools, t)
		}
	}
	return tools, nil
}

// isPeer says whether tool is one of the collectors podtail is compared
// with, each run on the same inputs and sink with its own configuration.
func isPeer(tool string) bool { return tool == "promtail" || tool == "alloy" }

func httpOK(url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// bench holds what every scenario shares.
type bench struct {
	o                 options
	dir, runID        string
	podtail, promtail string
	alloy             string
	baseline          string // podtail-base's binary, with -baseline
	forward           string // real Loki, with -loki
	rep               *Report
	containers        containerSet
}

func run(ctx context.Context, o options) (*Report, error) {
	b := &bench{o: o, rep: &Report{Started: time.Now()}}
	var err error
	if b.podtail, err = filepath.Abs(o.podtail); err != nil {
		return nil, err
	}
	if _, err := os.Stat(b.podtail); err != nil {
		return nil, fmt.Errorf("-podtail: %w (make build makes it)", err)
	}
	if o.baseline != "" {
		if b.baseline, err = filepath.Abs(o.baseline); err != nil {
			return nil, err
		}
		if _, err := os.Stat(b.baseline); err != nil {
			return nil, fmt.Errorf("-baseline: %w (make bench-ab builds one from a git revision)", err)
		}
	}
	if contains(o.tools, "promtail") {
		b.promtail = o.promtail
		if b.promtail == "" {
			buildStart := time.Now()
			if b.promtail, err = promtailBinary(o.repo); err != nil {
				return nil, err
			}
			b.rep.PromtailBuild = time.Since(buildStart)
		}
	}
	if contains(o.tools, "alloy") {
		b.alloy = o.alloy
		if b.alloy == "" {
			buildStart := time.Now()
			if b.alloy, err = alloyBinary(o.repo); err != nil {
				return nil, err
			}
			b.rep.AlloyBuild = time.Since(buildStart)
		}
	}
	id := make([]byte, 3)
	_, _ = rand.Read(id)
	b.runID = hex.EncodeToString(id)
	b.dir = o.dir
	if b.dir == "" {
		if b.dir, err = os.MkdirTemp("", "podtail-bench-"); err != nil {
			return nil, err
		}
		if !o.keep {
			defer os.RemoveAll(b.dir)
		}
	} else if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, err
	}
	b.rep.machine(b.podtail, b.alloy)
	if b.baseline != "" {
		b.rep.baselineMachine(b.baseline)
	}
	logf("run %s in %s", b.runID, b.dir)

	if o.loki {
		if _, err := mustGetenv("PODTAIL_LOKI_BIN"); err != nil {
			return b.rep, err
		}
		l, err := testbed.StartLoki(filepath.Join(b.dir, "loki"))
		if err != nil {
			return b.rep, err
		}
		defer l.Stop()
		b.forward = l.URL
		b.rep.Notes = append(b.rep.Notes, "every push was also passed on to a real Loki (the sink answered what Loki answered)")
	}

	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"throughput", func(ctx context.Context) error { return b.files(ctx, "throughput", o.throughput, o.profile) }},
		{"manyfiles", func(ctx context.Context) error { return b.files(ctx, "manyfiles", o.manyfiles, false) }},
	}
	for _, s := range steps {
		if o.scenarios[s.name] {
			if err := s.f(ctx); err != nil {
				return b.rep, fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}
	if o.scenarios["containers"] || o.scenarios["journald"] || o.scenarios["discovery"] {
		if err := b.podmanScenarios(ctx); err != nil {
			return b.rep, err
		}
	}
	if o.scenarios["idle"] {
		if err := b.idle(ctx); err != nil {
			return b.rep, fmt.Errorf("idle: %w", err)
		}
	}
	b.rep.Finished = time.Now()
	return b.rep, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// toolDir makes a fresh state directory for one run of one tool.
func (b *bench) toolDir(scenario, tool string) (string, error) {
	d := filepath.Join(b.dir, scenario, tool)
	_ = os.RemoveAll(d)
	return d, os.MkdirAll(filepath.Join(d, "data"), 0o755)
}

// startPodtail starts tool (podtail or podtail-base: the same
// configuration, each its own binary).
func (b *bench) startPodtail(tool string, cfg podtailConfig) func(sinkURL, dir string) (*proc, error) {
	bin := b.podtail
	if tool == baseTool {
		bin = b.baseline
	}
	return func(sinkURL, dir string) (*proc, error) {
		cfg.SinkURL, cfg.DataDir = sinkURL, filepath.Join(dir, "data")
		if cfg.Listen == "" {
			cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testbed.FreePort())
		}
		path := filepath.Join(dir, "podtail.yaml")
		if err := os.WriteFile(path, []byte(cfg.yaml()), 0o644); err != nil {
			return nil, err
		}
		return startProc(tool, filepath.Join(dir, "podtail.log"), bin, "run", "--config", path)
	}
}

func (b *bench) startPromtail(config func(sinkURL, dataDir string) string) func(sinkURL, dir string) (*proc, error) {
	return func(sinkURL, dir string) (*proc, error) {
		path := filepath.Join(dir, "promtail.yaml")
		if err := os.WriteFile(path, []byte(config(sinkURL, filepath.Join(dir, "data"))), 0o644); err != nil {
			return nil, err
		}
		return startProc("promtail", filepath.Join(dir, "promtail.log"), b.promtail, "-config.file="+path)
	}
}

// startAlloy runs `alloy run` on the configuration config makes, with its
// HTTP server on listen and its components' state (positions) under the
// run's data directory; usage reporting off.
func (b *bench) startAlloy(listen string, config func(sinkURL string) string) func(sinkURL, dir string) (*proc, error) {
	return func(sinkURL, dir string) (*proc, error) {
		path := filepath.Join(dir, "config.alloy")
		if err := os.WriteFile(path, []byte(config(sinkURL)), 0o644); err != nil {
			return nil, err
		}
		return startProc("alloy", filepath.Join(dir, "alloy.log"), b.alloy, "run",
			"--server.http.listen-addr="+listen, "--storage.path="+filepath.Join(dir, "data"), "--disable-reporting", path)
	}
}

// peerStart starts a peer (promtail or alloy) on the files under root or,
// with sock set, on the containers labelled tenantLabel; ready says when it
// is up (for the discovery scenario).
func (b *bench) peerStart(tool, root, sock, tenantLabel string) (start func(sinkURL, dir string) (*proc, error), ready func(*proc) error) {
	port := testbed.FreePort()
	switch tool {
	case "alloy":
		listen := fmt.Sprintf("127.0.0.1:%d", port)
		start = b.startAlloy(listen, func(sinkURL string) string {
			if sock != "" {
				return alloyDockerConfig(sinkURL, sock, tenantLabel)
			}
			return alloyFilesConfig(sinkURL, root)
		})
		// Alloy is ready once its components are loaded and running.
		ready = func(*proc) error { return waitReady("http://"+listen+"/-/ready", 30*time.Second) }
	default:
		start = b.startPromtail(func(sinkURL, dataDir string) string {
			if sock != "" {
				return promtailDockerConfig(sinkURL, dataDir, sock, tenantLabel, port)
			}
			return promtailFilesConfig(sinkURL, dataDir, root, port)
		})
		// Promtail's /ready waits for a target, and there is none yet.
		ready = func(*proc) error {
			return waitReady(fmt.Sprintf("http://127.0.0.1:%d/metrics", port), 30*time.Second)
		}
	}
	return start, ready
}

// peerFailed is the row of a peer that failed in a scenario: what the
// sink had counted by then, and how it failed.
func (b *bench) peerFailed(scenario string, r Result, err error) Result {
	logf("%s: %s failed: %v", scenario, r.Tool, err)
	r.Failed = failure(err)
	return r
}

// failure is a failed run's reason for a table cell: measure's first line
// (how far the tool got, without the sink's whole stats) and the last line
// of the tool's log.
func failure(err error) string {
	s := firstLine(err.Error())
	if i := strings.Index(s, " (sink {"); i >= 0 {
		s = s[:i]
	}
	if l := lastLine(err.Error(), 400); l != "" && l != s {
		s += "; its log's last line: " + l
	}
	return s
}

// lastLine is the last non-empty line of s, cut to at most n bytes.
func lastLine(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.Index(s, "err="); i >= 0 {
		s = s[i:] // a logfmt line's reason, without its preamble
	}
	return s[:min(len(s), n)]
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
