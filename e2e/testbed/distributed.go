package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// distributedConfig is the test bed's Loki in its simple scalable form: one
// file for the write, read and backend targets, each started with its own
// ports as flags (-server.http-listen-port, -server.grpc-listen-port,
// -memberlist.bind-port and -memberlist.advertise-port: memberlist tells the
// others the advertised one, 7946 unless set, so on one host the processes
// lost each other without it). The rings are in memberlist, joined on
// loopback; chunks and index go to one shared directory (the object store
// of processes on one machine); each target keeps its own state (WAL,
// active index, compactor) under $LOKI_DIR/<target>. Per-tenant limits come
// from overrides.yaml, reloaded every second. contrib/loki/distributed has
// the same layout for operators.
const distributedConfig = `auth_enabled: true
server:
  http_listen_address: 127.0.0.1
  grpc_listen_address: 127.0.0.1
  log_level: warn
common:
  path_prefix: ${LOKI_DIR}/${LOKI_TARGET}
  replication_factor: 1
  instance_addr: 127.0.0.1
  compactor_address: http://127.0.0.1:${LOKI_BACKEND_HTTP_PORT}
  ring:
    kvstore:
      store: memberlist
  storage:
    filesystem:
      chunks_directory: ${LOKI_DIR}/shared/chunks
      rules_directory: ${LOKI_DIR}/shared/rules
memberlist:
  bind_addr: [127.0.0.1]
  advertise_addr: 127.0.0.1
  join_members:
    - 127.0.0.1:${LOKI_WRITE_ML_PORT}
    - 127.0.0.1:${LOKI_READ_ML_PORT}
    - 127.0.0.1:${LOKI_BACKEND_ML_PORT}
schema_config:
  configs:
    - from: 2024-01-01
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
ingester:
  lifecycler:
    min_ready_duration: 0s
  # The write path's WAL: what the distributor acknowledged survives a
  # SIGKILL of the write process.
  wal:
    enabled: true
    dir: ${LOKI_DIR}/${LOKI_TARGET}/wal
    flush_on_shutdown: true
frontend:
  scheduler_dns_lookup_period: 1s
frontend_worker:
  dns_lookup_duration: 1s
limits_config:
  discover_service_name: []
  discover_log_levels: false
  allow_structured_metadata: true
  ingestion_rate_mb: 64
  ingestion_burst_size_mb: 128
  per_stream_rate_limit: 32MB
  per_stream_rate_limit_burst: 64MB
  max_entries_limit_per_query: 100000
  max_query_series: 10000
runtime_config:
  file: ${LOKI_DIR}/overrides.yaml
  period: 1s
query_range:
  results_cache:
    cache:
      embedded_cache:
        enabled: false
analytics:
  reporting_enabled: false
`

// LokiTarget is one process of a DistributedLoki: write, read or backend.
type LokiTarget struct {
	Name                       string
	URL                        string // its own HTTP address, behind the gateway
	httpPort, grpcPort, mlPort int
	d                          *DistributedLoki
	svc                        *Service
}

// DistributedLoki is Loki as three processes (write, read, backend) of the
// one binary $PODTAIL_LOKI_BIN, behind an nginx gateway.
type DistributedLoki struct {
	Dir                  string
	Write, Read, Backend *LokiTarget
	Gateway              *Gateway
}

// StartDistributedLoki starts the three targets with their data under dir,
// waits until each is ready, and starts the gateway in front of them with
// the given credentials (user → tenant and password). overrides is the
// runtime configuration's content ("overrides:\n  tenant:\n    ..."), which
// SetOverrides replaces while Loki runs.
func StartDistributedLoki(dir string, users []GatewayUser, overrides []byte) (*DistributedLoki, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d := &DistributedLoki{Dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "loki.yaml"), []byte(distributedConfig), 0o644); err != nil {
		return nil, err
	}
	if len(overrides) == 0 {
		overrides = []byte("overrides: {}\n")
	}
	if err := d.SetOverrides(overrides); err != nil {
		return nil, err
	}
	for _, t := range []**LokiTarget{&d.Write, &d.Read, &d.Backend} {
		*t = &LokiTarget{d: d, httpPort: FreePort(), grpcPort: FreePort(), mlPort: FreePort()}
		(*t).URL = fmt.Sprintf("http://127.0.0.1:%d", (*t).httpPort)
	}
	d.Write.Name, d.Read.Name, d.Backend.Name = "write", "read", "backend"
	// All three at once: each joins whichever of the others is up, and the
	// read target is ready only once it sees the backend's query scheduler.
	for _, t := range []*LokiTarget{d.Backend, d.Write, d.Read} {
		if err := t.launch(); err != nil {
			d.Stop()
			return nil, err
		}
	}
	for _, t := range []*LokiTarget{d.Backend, d.Write, d.Read} {
		if err := t.waitReady(); err != nil {
			d.Stop()
			return nil, err
		}
	}
	g, err := StartGateway(filepath.Join(dir, "gateway"), d.Write.URL, d.Read.URL, users)
	if err != nil {
		d.Stop()
		return nil, err
	}
	d.Gateway = g
	return d, nil
}

// SetOverrides writes Loki's runtime configuration (per-tenant limits),
// atomically; the targets read it again within a second.
func (d *DistributedLoki) SetOverrides(b []byte) error {
	path := filepath.Join(d.Dir, "overrides.yaml")
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// Stop stops the gateway and the three targets.
func (d *DistributedLoki) Stop() {
	if d.Gateway != nil {
		d.Gateway.Stop()
	}
	for _, t := range []*LokiTarget{d.Read, d.Write, d.Backend} {
		if t != nil {
			t.Stop()
		}
	}
}

// Start starts a stopped or killed target again, on its ports and data,
// and waits until it is ready.
func (t *LokiTarget) Start() error {
	if err := t.launch(); err != nil {
		return err
	}
	return t.waitReady()
}

func (t *LokiTarget) launch() error {
	bin := os.Getenv("PODTAIL_LOKI_BIN")
	if bin == "" {
		return fmt.Errorf("PODTAIL_LOKI_BIN is not set: run through e2e/testbed/testbed.sh")
	}
	d := t.d
	env := []string{
		"LOKI_DIR=" + d.Dir,
		"LOKI_TARGET=" + t.Name,
		"LOKI_BACKEND_HTTP_PORT=" + strconv.Itoa(d.Backend.httpPort),
		"LOKI_WRITE_ML_PORT=" + strconv.Itoa(d.Write.mlPort),
		"LOKI_READ_ML_PORT=" + strconv.Itoa(d.Read.mlPort),
		"LOKI_BACKEND_ML_PORT=" + strconv.Itoa(d.Backend.mlPort),
	}
	s, err := start(bin, filepath.Join(d.Dir, t.Name+".log"), env,
		"-config.file="+filepath.Join(d.Dir, "loki.yaml"), "-config.expand-env=true", "-target="+t.Name,
		"-server.http-listen-port="+strconv.Itoa(t.httpPort), "-server.grpc-listen-port="+strconv.Itoa(t.grpcPort),
		"-memberlist.bind-port="+strconv.Itoa(t.mlPort), "-memberlist.advertise-port="+strconv.Itoa(t.mlPort))
	if err != nil {
		return err
	}
	t.svc = s
	return nil
}

func (t *LokiTarget) waitReady() error {
	if err := WaitHTTP(t.URL+"/ready", 90*time.Second); err != nil {
		t.svc.Stop()
		return fmt.Errorf("loki %s not ready (log %s): %w", t.Name, t.svc.Log, err)
	}
	return nil
}

// Stop stops the target (SIGINT: an ingester flushes and keeps its WAL).
func (t *LokiTarget) Stop() { t.svc.Stop() }

// Kill SIGKILLs the target and waits until it has exited: nothing is
// flushed, and what the write target acknowledged is only in its WAL.
func (t *LokiTarget) Kill() {
	select {
	case <-t.svc.done:
		return
	default:
	}
	_ = t.svc.Cmd.Process.Signal(syscall.SIGKILL)
	<-t.svc.done
}
