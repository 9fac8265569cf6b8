package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a started collector.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(name, logFile string, argv ...string) (*proc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits (SIGKILL after 15 s).
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail is the end of the process's output, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// podtailConfig is podtail's configuration for a run: files.static over the
// workload (or the Podman socket for containers), the default zap preset
// for files and json_auto for container output, loki.url at the sink.
type podtailConfig struct {
	SinkURL, DataDir, Listen string
	StaticGlob               string // files scenarios
	Socket, TenantLabel      string // container scenarios
	Pprof                    bool
}

func (c podtailConfig) yaml() string {
	var b strings.Builder
	if c.Socket == "" {
		b.WriteString("podman:\n  enabled: false\n")
	} else {
		fmt.Fprintf(&b, "podman:\n  socket: unix://%s\n", c.Socket)
		fmt.Fprintf(&b, "discovery:\n  tenant_label: %s\n", c.TenantLabel)
	}
	fmt.Fprintf(&b, "loki:\n  url: %s\n", c.SinkURL)
	fmt.Fprintf(&b, "data_dir: %s\n", c.DataDir)
	fmt.Fprintf(&b, "server:\n  listen: %s\n", c.Listen)
	if c.Pprof {
		b.WriteString("  pprof: true\n")
	}
	b.WriteString("log:\n  level: warn\n")
	if c.StaticGlob != "" {
		fmt.Fprintf(&b, "files:\n  static:\n    - glob: %s\n", c.StaticGlob)
	}
	return b.String()
}

// promtailFilesConfig is the seed's Promtail pipeline over the workload:
// path regex → tenant/application/version labels (and the tenant as
// X-Scope-OrgID, as podtail sends it), json, level label, timestamp from ts.
func promtailFilesConfig(sinkURL, dataDir, root string, httpPort int) string {
	return fmt.Sprintf(`server:
  http_listen_address: 127.0.0.1
  http_listen_port: %d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: 0
  log_level: warn
positions:
  filename: %s/positions.yaml
clients:
  - url: %s/loki/api/v1/push
scrape_configs:
  - job_name: apps
    static_configs:
      - targets: [localhost]
        labels:
          __path__: %s/namespace/*/*/workplace/logs/*.log
    pipeline_stages:
      - regex:
          source: filename
          expression: 'namespace/(?P<tenant>[^/]+)/(?P<application>[^/]+)/workplace/logs/(?P<user>[^_]+)_(?P<app>.+)_(?P<version>v[0-9]+)\.log$'
      - labels:
          tenant:
          application:
          version:
      - tenant:
          source: tenant
      - json:
          expressions:
            level: level
            msg: msg
            ts: ts
      - labels:
          level:
      - timestamp:
          source: ts
          format: Unix
`, httpPort, dataDir, sinkURL, root)
}

// promtailDockerConfig follows the containers labelled tenantLabel through
// the Docker-compatible API on the Podman socket (docker_sd_configs), with
// the same labels and pipeline as podtail's container output.
func promtailDockerConfig(sinkURL, dataDir, socket, tenantLabel string, httpPort int) string {
	return fmt.Sprintf(`server:
  http_listen_address: 127.0.0.1
  http_listen_port: %d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: 0
  log_level: warn
positions:
  filename: %s/positions.yaml
clients:
  - url: %s/loki/api/v1/push
scrape_configs:
  - job_name: containers
    docker_sd_configs:
      - host: unix://%s
        refresh_interval: 5s
        filters:
          - name: label
            values: [%s]
    relabel_configs:
      - source_labels: [__meta_docker_container_label_%s]
        target_label: tenant
      - source_labels: [__meta_docker_container_label_app]
        target_label: application
      - source_labels: [__meta_docker_container_label_version]
        target_label: version
      - source_labels: [__meta_docker_container_log_stream]
        target_label: stream
    pipeline_stages:
      - tenant:
          label: tenant
      - json:
          expressions:
            level: level
            ts: ts
      - labels:
          level:
      - timestamp:
          source: ts
          format: Unix
`, httpPort, dataDir, sinkURL, socket, tenantLabel, tenantLabel)
}

// cacheDir is where the test bed keeps what is slow to make.
func cacheDir() string {
	if d := os.Getenv("PODTAIL_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "podtail")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "podtail")
}

// promtailBinary builds bench/promtailbuild once per version of its
// sources (the hash of go.mod, go.sum and main.go names the binary), as the
// test bed does for Loki.
func promtailBinary(repo string) (string, error) {
	src := filepath.Join(repo, "bench", "promtailbuild")
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("promtail build module: %w", err)
		}
		h.Write(b)
	}
	bin := filepath.Join(cacheDir(), "promtail-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cacheDir(), 0o755); err != nil {
		return "", err
	}
	logf("building Promtail from Loki's Go module (cold: minutes, ~3.5 GB memory); cache: %s", bin)
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin+".tmp", ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building promtail in %s: %w", src, err)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", err
	}
	logf("Promtail built in %s", time.Since(start).Round(time.Second))
	return bin, nil
}
