package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// podtail is the podtail under soak: one process at a time, started again
// on the same data_dir and listen address after each SIGKILL, its output
// appended to one log file with a marker line per start.
type podtail struct {
	bin, cfgFile, dataDir, listen string
	log                           *os.File

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	ending bool // the soak is ending the current process (kill, stop)
}

// podtailConfig is the soak's configuration: the defaults but for where
// things are, with the zap apps outside containers found by files.static,
// and only this run's containers collected: the Podman service shares its
// storage with whatever else runs on this machine (other test runs'
// containers, tenants included), which would otherwise be collected too.
func podtailConfig(socket, run, lokiURL, dataDir, listen, staticGlob, level string) string {
	return fmt.Sprintf(`podman:
  socket: %s
discovery:
  select:
    - {action: keep, source: "label:podtail-soak", regex: %q}
loki:
  url: %s
data_dir: %s
server:
  listen: %s
log:
  level: %s
files:
  static:
    - glob: %s
`, socket, run, lokiURL, dataDir, listen, level, staticGlob)
}

// newPodtail prepares podtail's configuration (config is given the listen
// address picked for it) and log; start runs it.
func newPodtail(bin, dataDir, logPath string, config func(listen string) string) (*podtail, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort())
	cfgFile := dataDir + ".yaml"
	if err := os.WriteFile(cfgFile, []byte(config(listen)), 0o600); err != nil {
		f.Close()
		return nil, err
	}
	return &podtail{bin: bin, cfgFile: cfgFile, dataDir: dataDir, listen: listen, log: f}, nil
}

// start runs podtail and waits until it is ready.
func (p *podtail) start(why string) error {
	p.mu.Lock()
	p.starts++
	p.ending = false
	fmt.Fprintf(p.log, "### soak: podtail start %d (%s) at %s\n", p.starts, why, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, "run", "--config", p.cfgFile)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	if err := testbed.WaitHTTP("http://"+p.listen+"/ready", 90*time.Second); err != nil {
		return fmt.Errorf("podtail not ready 90 s after its start: %w", err)
	}
	return nil
}

// pid is the running podtail's process id, 0 when none runs.
func (p *podtail) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *podtail) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitedByItself reports whether the current podtail has ended though
// nobody stopped it, and how.
func (p *podtail) exitedByItself() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.ending || !p.exited() {
		return false, ""
	}
	return true, p.cmd.ProcessState.String()
}

// kill SIGKILLs podtail and waits until it is gone.
func (p *podtail) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.ending = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return // gone already
	default:
	}
	fmt.Fprintf(p.log, "### soak: SIGKILL at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM and waits for the exit: an error unless podtail
// stopped cleanly within a minute.
func (p *podtail) stop() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.ending = true
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	fmt.Fprintf(p.log, "### soak: SIGTERM at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("podtail did not stop within a minute of SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("podtail exited %d after SIGTERM", code)
	}
	return nil
}

// metrics reads podtail's /metrics and sums each named metric over its
// series (all series when labels is empty); a metric podtail does not
// answer for is absent.
func (p *podtail) metrics(names ...string) map[string]float64 {
	out := map[string]float64{}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.listen + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, name := range names {
			want, labels, _ := strings.Cut(name, "{")
			if !strings.HasPrefix(line, want+"{") && !strings.HasPrefix(line, want+" ") {
				continue
			}
			if labels != "" && !strings.Contains(line, strings.TrimSuffix(labels, "}")) {
				continue
			}
			f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err == nil {
				out[name] += f
			}
		}
	}
	return out
}
