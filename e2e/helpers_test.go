package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// podtailProc is one running podtail.
type podtailProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	dataDir string
	listen  string
	cfgFile string
	log     syncBuffer
	done    chan struct{}
}

type podtailOpts struct {
	socket     string // default: the shared service
	dataDir    string // default: a fresh one
	queueBytes string // loki.queue_bytes; default: podtail's
	extra      string // more YAML
	lokiURL    string // default: the test bed's Loki
	lokiExtra  string // more keys of the loki: section, unindented ("bearer_token_file: /x")
	noPodman   bool   // podman.enabled: false (files.static only)
	batchWait  string // loki.batch_wait; default: 200ms, for quick tests
	logLevel   string // default: debug
}

// startPodtail runs `podtail run` with a config file of its own and waits
// until /ready answers 200.
func startPodtail(t *testing.T, o podtailOpts) *podtailProc {
	t.Helper()
	if o.socket == "" {
		o.socket = bed.socket
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.lokiURL == "" {
		o.lokiURL = bed.lokiURL
	}
	queue := ""
	if o.queueBytes != "" {
		queue = "  queue_bytes: " + o.queueBytes
	}
	if o.lokiExtra != "" {
		queue += "\n  " + strings.ReplaceAll(strings.TrimSpace(o.lokiExtra), "\n", "\n  ")
	}
	o.batchWait = cmp.Or(o.batchWait, "200ms")
	o.logLevel = cmp.Or(o.logLevel, "debug")
	enabled := ""
	if o.noPodman {
		enabled = "\n  enabled: false"
	}
	p := &podtailProc{t: t, dataDir: o.dataDir, listen: fmt.Sprintf("127.0.0.1:%d", testbed.FreePort()), done: make(chan struct{})}
	cfg := fmt.Sprintf(`podman:
  socket: %s%s
  reconcile_interval: 2s
  reconnect_backoff: 1s
loki:
  url: %s
  batch_wait: %s
  min_backoff: 50ms
  max_backoff: 1s
%s
data_dir: %s
server:
  listen: %s
log:
  level: %s
%s`, o.socket, enabled, o.lokiURL, o.batchWait, queue, o.dataDir, p.listen, o.logLevel, o.extra)
	cfgFile := filepath.Join(t.TempDir(), "podtail.yaml")
	p.cfgFile = cfgFile
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bed.podtail, "run", "--config", cfgFile)
	p.cmd.Stdout = &p.log
	p.cmd.Stderr = &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("podtail log:\n%s", tail(p.Log(), 60))
			if dir := os.Getenv("PODTAIL_E2E_LOGS"); dir != "" {
				_ = os.WriteFile(filepath.Join(dir, t.Name()+".podtail.log"), []byte(p.Log()), 0o644)
			}
		}
	})
	if err := testbed.WaitHTTP("http://"+p.listen+"/ready", 20*time.Second); err != nil {
		t.Fatalf("podtail not ready: %v\n%s", err, p.Log())
	}
	return p
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (p *podtailProc) Log() string { return p.log.String() }

func (p *podtailProc) signal(s syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(s)
	}
}

// peakRSS is the most memory podtail has held resident so far (VmHWM),
// exact rather than sampled; 0 once it has exited.
func (p *podtailProc) peakRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// stop sends SIGTERM and waits for a clean exit.
func (p *podtailProc) stop() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("podtail did not stop within 30s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("podtail exited %d after SIGTERM:\n%s", code, tail(p.Log(), 30))
	}
}

// metric returns the sum of a metric's series matching all label pairs, or
// 0 when podtail does not answer (safe from any goroutine: no Fatal).
func (p *podtailProc) metric(name string, labels ...string) float64 {
	resp, err := http.Get("http://" + p.listen + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && strings.Contains(line, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
		}
		if ok {
			f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += f
		}
	}
	return sum
}

// podman runs the podman CLI against the same storage as the service.
func podman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// sameInBothProfiles skips a test in the Podman 5 + journald profile: what
// it tests does not depend on where Podman writes container output (the file
// tailer, the sink, the configuration), and CI runs it in the default
// profile. why says so in the skip.
func sameInBothProfiles(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("PODTAIL_PROFILE") == "podman5-journald" {
		t.Skip("run in the podman4-file profile only: " + why)
	}
}

// bedLogDriver is the host profile's default log driver (k8s-file with
// Debian's Podman 4.3.1, journald in the Podman 5 + journald profile), as
// the service reports it.
func bedLogDriver(t *testing.T) string {
	t.Helper()
	logDriverOnce.Do(func() { logDriver = podman(t, "info", "--format", "{{.Host.LogDriver}}") })
	return logDriver
}

var (
	logDriverOnce sync.Once
	logDriver     string
)

// runContainer starts a detached container of tenant/app/version running a
// shell script, removed when the test ends.
func runContainer(t *testing.T, cname, tenant, app, version, script string, extra ...string) string {
	t.Helper()
	args := []string{"run", "-d", "--name", cname, "--label", "tenant=" + tenant, "--label", "app=" + app, "--label", "version=" + version}
	args = append(args, extra...)
	args = append(args, bed.image, "sh", "-c", script)
	id := podman(t, args...)
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", "-t", "0", cname).Run() })
	return id
}

type stream = testbed.Stream

// query runs a LogQL log query as tenant over the last hour.
func query(t *testing.T, tenant, logql string) []stream {
	t.Helper()
	ss, err := testbed.Query(bed.lokiURL, tenant, logql)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// count returns how many lines the query returns in all.
func count(t *testing.T, tenant, logql string) int {
	n := 0
	for _, s := range query(t, tenant, logql) {
		n += len(s.Lines)
	}
	return n
}

// eventually polls cond every 50ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCount waits until Loki holds want entries for selector as tenant,
// and fails if it holds more, or fewer when the timeout passes. It counts
// in Loki (count_over_time), polling twice a second: a count reads every
// entry, and Loki shares this machine's 2 cores.
func waitCount(t *testing.T, tenant, selector string, want int, timeout time.Duration) {
	t.Helper()
	waitCountOver(t, tenant, selector, want, timeout, time.Hour) // testbed.Count's span
}

// seqLines checks that lines hold prefix+1 .. prefix+n, each exactly once.
func seqLines(t *testing.T, lines []string, prefix string, n int) {
	t.Helper()
	seen := make(map[int]int, n)
	re := regexp.MustCompile("^" + regexp.QuoteMeta(prefix) + `(\d+)$`)
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("unexpected line %q (want %s<n>)", l, prefix)
			continue
		}
		i, _ := strconv.Atoi(m[1])
		seen[i]++
	}
	missing, dup := 0, 0
	for i := 1; i <= n; i++ {
		switch seen[i] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 || len(lines) != n {
		t.Fatalf("%s: %d lines for %d expected: %d missing, %d duplicated", prefix, len(lines), n, missing, dup)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
