package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// alloyPipeline is the seed's pipeline in Alloy's loki.process stages, as
// podtail's zap preset runs it: level from the JSON line to a label, the
// entry's time from ts (float seconds), and caller to structured metadata
// (which loki.write sends in the push, as podtail does; Promtail's config
// here has no such stage).
const alloyPipeline = `  stage.json {
    expressions = { level = "", ts = "", caller = "" }
  }
  stage.labels {
    values = { level = "" }
  }
  stage.timestamp {
    source = "ts"
    format = "Unix"
  }
  stage.structured_metadata {
    values = { caller = "" }
  }
`

// alloySink is the loki.write both Alloy configurations push through, with
// Alloy's logging at warn. stage.tenant sets the reserved __tenant_id__
// label, from which loki.write sends each batch with its X-Scope-OrgID (as
// Promtail's client does).
func alloySink(sinkURL string) string {
	return fmt.Sprintf(`logging {
  level = "warn"
}

loki.write "sink" {
  endpoint {
    url = "%s/loki/api/v1/push"
  }
}
`, sinkURL)
}

// alloyFilesConfig is Promtail's files configuration in Alloy's terms:
// local.file_match over the same glob, loki.source.file reading from the
// start (positions under Alloy's --storage.path), the path regex to the
// tenant/application/version labels and the tenant as X-Scope-OrgID, then
// the seed's pipeline.
func alloyFilesConfig(sinkURL, root string) string {
	return alloySink(sinkURL) + fmt.Sprintf(`
local.file_match "apps" {
  path_targets = [{ "__path__" = %q }]
}

loki.source.file "apps" {
  targets    = local.file_match.apps.targets
  forward_to = [loki.process.apps.receiver]
}

loki.process "apps" {
  forward_to = [loki.write.sink.receiver]

  stage.regex {
    source     = "filename"
    expression = %q
  }
  stage.labels {
    values = { tenant = "", application = "", version = "" }
  }
  stage.tenant {
    source = "tenant"
  }
`, root+"/namespace/*/*/workplace/logs/*.log",
		`namespace/(?P<tenant>[^/]+)/(?P<application>[^/]+)/workplace/logs/(?P<user>[^_]+)_(?P<app>.+)_(?P<version>v[0-9]+)\.log$`) +
		alloyPipeline + "}\n"
}

// alloyDockerConfig is Promtail's docker_sd configuration in Alloy's terms:
// discovery.docker on the Podman socket (Podman's Docker-compatible API),
// filtered to the run's tenant label and refreshed every 5 s as Promtail's
// is; discovery.relabel's rules (applied by loki.source.docker to each
// container's streams) for the tenant, application, version and stream
// labels; loki.source.docker reading each container's output through the
// same API; then the tenant and the seed's pipeline.
func alloyDockerConfig(sinkURL, socket, tenantLabel string) string {
	return alloySink(sinkURL) + fmt.Sprintf(`
discovery.docker "containers" {
  host             = "unix://%[1]s"
  refresh_interval = "5s"

  filter {
    name   = "label"
    values = [%[2]q]
  }
}

discovery.relabel "containers" {
  targets = []

  rule {
    source_labels = ["__meta_docker_container_label_%[2]s"]
    target_label  = "tenant"
  }
  rule {
    source_labels = ["__meta_docker_container_label_app"]
    target_label  = "application"
  }
  rule {
    source_labels = ["__meta_docker_container_label_version"]
    target_label  = "version"
  }
  rule {
    source_labels = ["__meta_docker_container_log_stream"]
    target_label  = "stream"
  }
}

loki.source.docker "containers" {
  host             = "unix://%[1]s"
  targets          = discovery.docker.containers.targets
  relabel_rules    = discovery.relabel.containers.rules
  refresh_interval = "5s"
  forward_to       = [loki.process.containers.receiver]
}

loki.process "containers" {
  forward_to = [loki.write.sink.receiver]

  stage.tenant {
    label = "tenant"
  }
`, socket, tenantLabel) + alloyPipeline + "}\n"
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
	return cachedBuild(repo, "promtail", "Promtail from Loki's Go module (cold: minutes, ~3.5 GB memory)", nil)
}

// alloyVersion is the version of github.com/grafana/alloy that go.mod
// requires.
var alloyVersion = regexp.MustCompile(`(?m)^(?:require)?\s*github\.com/grafana/alloy (v\S+)`)

// alloyBinary builds bench/alloybuild the same way: Grafana Alloy from its
// Go module, static (CGO_ENABLED=0, netgo), with Go's regexp swapped for
// the RE2 port Alloy's Makefile always adds (gore2regex), stripped. Without
// embedalloyui (its UI needs an npm build) and promtail_journal_enabled
// (cgo): neither is used here. The version Alloy reports is the one go.mod
// requires (-X, as Alloy's release builds set it; otherwise it says
// "-devel"). Cold: ~13 min on 2 idle cores, ~6.1 GB at the link; the
// binary is ~386 MiB.
func alloyBinary(repo string) (string, error) {
	gomod, err := os.ReadFile(filepath.Join(repo, "bench", "alloybuild", "go.mod"))
	if err != nil {
		return "", fmt.Errorf("alloy build module: %w", err)
	}
	m := alloyVersion.FindSubmatch(gomod)
	if m == nil {
		return "", errors.New("bench/alloybuild/go.mod requires no github.com/grafana/alloy")
	}
	return cachedBuild(repo, "alloy", "Grafana Alloy from its Go module (cold: ~15 minutes on 2 idle cores, ~6.1 GB memory)",
		[]string{"-tags", "netgo gore2regex", "-ldflags", "-s -w -X github.com/grafana/alloy/internal/build.Version=" + string(m[1])})
}

// cachedBuild builds the wrapper module bench/<name>build into the cache,
// named by the hash of its go.mod, go.sum and main.go, unless that binary
// is there already. The build runs at nice 19 when nice is at hand: it
// comes before any measurement, and others may share the machine. No VCS
// stamp: the binary would carry podtail's revision as its own.
func cachedBuild(repo, name, what string, flags []string) (string, error) {
	src := filepath.Join(repo, "bench", name+"build")
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("%s build module: %w", name, err)
		}
		h.Write(b)
	}
	h.Write([]byte(strings.Join(flags, "\x00")))
	bin := filepath.Join(cacheDir(), name+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cacheDir(), 0o755); err != nil {
		return "", err
	}
	logf("building %s; cache: %s", what, bin)
	start := time.Now()
	argv := append(append([]string{"go", "build"}, flags...), "-o", bin+".tmp", ".")
	if nice, err := exec.LookPath("nice"); err == nil {
		argv = append([]string{nice, "-n", "19"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly -buildvcs=false")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		_ = os.Remove(bin + ".tmp")
		return "", fmt.Errorf("building %s in %s: %w", name, src, err)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", err
	}
	logf("%s built in %s", name, time.Since(start).Round(time.Second))
	return bin, nil
}
