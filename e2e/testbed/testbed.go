// Package testbed starts the real services podtail's e2e tests and demo run
// against: a Loki built from its Go module and a Podman API service on a
// private socket. testbed.sh installs and builds them; this package runs
// them and talks to them.
package testbed

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

//go:embed loki.yaml
var lokiConfig []byte

// Service is a started process.
type Service struct {
	Cmd  *exec.Cmd
	Log  string        // file with its output
	done chan struct{} // closed when the process has exited
}

// Stop interrupts the process and waits until it has exited (killing it
// after 10 s), so its ports are free when Stop returns.
func (s *Service) Stop() {
	if s == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.Cmd.Process.Kill()
		<-s.done
	}
}

func start(name string, logFile string, env []string, args ...string) (*Service, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	svc := &Service{Cmd: cmd, Log: logFile, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(svc.done) }()
	return svc, nil
}

// FreePort returns a TCP port free on 127.0.0.1 right now, and never one it
// returned before in this process: a service stopped and started again on
// its ports (Loki in the spool and outage tests) leaves them free meanwhile,
// and a podtail started then was once given Loki's HTTP port, so Loki could
// not start again and every later test failed.
func FreePort() int {
	given.Lock()
	defer given.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given.ports[port] {
			given.ports[port] = true
			return port
		}
	}
}

// given is the ports FreePort handed out: the test bed's one piece of
// process-wide state, since every test and service shares the machine's ports.
var given = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// OverLimitTenant is a tenant the test bed's Loki refuses, as it refuses a
// tenant over its limits: its ingestion rate and burst (overrides.yaml, Loki's
// per-tenant runtime configuration) are ~100 bytes, less than any push, so
// every push of it is answered 429 ("Ingestion rate limit exceeded").
const OverLimitTenant = "over-limit"

var lokiOverrides = []byte(`overrides:
  ` + OverLimitTenant + `:
    ingestion_rate_mb: 0.0001
    ingestion_burst_size_mb: 0.0001
`)

// Loki is a running (or stopped) Loki of the test bed.
type Loki struct {
	URL                string
	dir                string
	httpPort, grpcPort int
	svc                *Service
}

// StartLoki runs the Loki binary $PODTAIL_LOKI_BIN with the test bed's
// multi-tenant config, its data in dir, on free ports, and waits until
// /ready.
func StartLoki(dir string) (*Loki, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "loki.yaml"), lokiConfig, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "overrides.yaml"), lokiOverrides, 0o644); err != nil {
		return nil, err
	}
	l := &Loki{dir: dir, httpPort: FreePort(), grpcPort: FreePort()}
	l.URL = fmt.Sprintf("http://127.0.0.1:%d", l.httpPort)
	return l, l.Start()
}

// Start starts a stopped Loki again, on the same ports and data.
func (l *Loki) Start() error {
	bin := os.Getenv("PODTAIL_LOKI_BIN")
	if bin == "" {
		return fmt.Errorf("PODTAIL_LOKI_BIN is not set: run through e2e/testbed/testbed.sh")
	}
	s, err := start(bin, filepath.Join(l.dir, "loki.log"),
		[]string{"LOKI_DIR=" + l.dir, "LOKI_HTTP_PORT=" + strconv.Itoa(l.httpPort), "LOKI_GRPC_PORT=" + strconv.Itoa(l.grpcPort)},
		"-config.file="+filepath.Join(l.dir, "loki.yaml"), "-config.expand-env=true")
	if err != nil {
		return err
	}
	l.svc = s
	if err := WaitHTTP(l.URL+"/ready", 60*time.Second); err != nil {
		s.Stop()
		return fmt.Errorf("loki not ready (log %s): %w", s.Log, err)
	}
	return nil
}

// Stop stops Loki (SIGINT: it flushes and keeps its WAL).
func (l *Loki) Stop() { l.svc.Stop() }

// StartPodmanService runs `podman system service` on the unix socket sock.
func StartPodmanService(sock string) (*Service, error) {
	return StartPodmanServiceArgs(sock)
}

// StartPodmanServiceArgs is StartPodmanService with podman's global options
// first (--root, --runroot, --storage-driver: a second store).
func StartPodmanServiceArgs(sock string, global ...string) (*Service, error) {
	args := append(append([]string{}, global...), "system", "service", "--time=0", "unix://"+sock)
	s, err := start("podman", sock+".log", nil, args...)
	if err != nil {
		return nil, err
	}
	if err := WaitSocket(sock, 20*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// WaitHTTP polls url until it answers 200.
func WaitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitSocket polls a Podman API socket until _ping answers.
func WaitSocket(sock string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get("http://d/_ping")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("podman service on %s: %w", sock, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stream is one Loki stream of a query result, oldest line first.
type Stream struct {
	Labels map[string]string
	Lines  []string
	Times  []int64
}

// Query runs a LogQL log query as tenant over the last hour (at most
// 100,000 entries, and Loki refuses answers over 4 MB: see QueryAll).
func Query(lokiURL, tenant, logql string) ([]Stream, error) {
	return QueryLimit(lokiURL, tenant, logql, 100000)
}

// QueryLimit is Query returning at most limit entries, oldest first.
func QueryLimit(lokiURL, tenant, logql string, limit int) ([]Stream, error) {
	return query(lokiURL, tenant, logql, time.Now().Add(-time.Hour).UnixNano(), time.Now().Add(time.Minute).UnixNano(), limit)
}

func query(lokiURL, tenant, logql string, start, end int64, limit int) ([]Stream, error) {
	v := url.Values{}
	v.Set("query", logql)
	v.Set("start", strconv.FormatInt(start, 10))
	v.Set("end", strconv.FormatInt(end, 10))
	v.Set("limit", strconv.Itoa(limit))
	v.Set("direction", "forward")
	body, err := get(lokiURL+"/loki/api/v1/query_range", tenant, v)
	if err != nil {
		return nil, err
	}
	var r struct {
		Data struct {
			Result []struct {
				Stream map[string]string `json:"stream"`
				Values [][2]string       `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("loki answer: %v: %s", err, body)
	}
	var out []Stream
	for _, res := range r.Data.Result {
		s := Stream{Labels: res.Stream}
		for _, v := range res.Values {
			ns, _ := strconv.ParseInt(v[0], 10, 64)
			s.Times = append(s.Times, ns)
			s.Lines = append(s.Lines, v[1])
		}
		out = append(out, s)
	}
	return out, nil
}

// QueryAll runs a LogQL log query as tenant over the last hour and returns
// every entry, paging forward through Loki's per-query limit.
func QueryAll(lokiURL, tenant, logql string) ([]Stream, error) {
	return QueryAllOver(lokiURL, tenant, logql, time.Hour)
}

// QueryAllOver is QueryAll over the last span (for entries stamped while
// the clock was set back).
func QueryAllOver(lokiURL, tenant, logql string, span time.Duration) ([]Stream, error) {
	const page = 5000 // Loki caps a gRPC message at 4 MB: 5,000 lines of ~200 B stay well under
	start := time.Now().Add(-span).UnixNano()
	end := time.Now().Add(time.Minute).UnixNano()
	byLabels := map[string]*Stream{}
	var order []string
	seen := map[string]bool{}
	for {
		ss, err := query(lokiURL, tenant, logql, start, end, page)
		if err != nil {
			return nil, err
		}
		got, fresh, last := 0, 0, start
		for _, s := range ss {
			key := fmt.Sprint(s.Labels)
			dst := byLabels[key]
			if dst == nil {
				dst = &Stream{Labels: s.Labels}
				byLabels[key] = dst
				order = append(order, key)
			}
			for i := range s.Lines {
				got++
				last = max(last, s.Times[i])
				id := key + "\x00" + strconv.FormatInt(s.Times[i], 10) + "\x00" + s.Lines[i]
				if seen[id] {
					continue // the page boundary is inclusive
				}
				seen[id] = true
				fresh++
				dst.Lines = append(dst.Lines, s.Lines[i])
				dst.Times = append(dst.Times, s.Times[i])
			}
		}
		if got < page || fresh == 0 {
			break
		}
		start = last
	}
	out := make([]Stream, 0, len(order))
	for _, k := range order {
		out = append(out, *byLabels[k])
	}
	return out, nil
}

// Count returns sum(count_over_time(selector[1h])) as tenant: how many
// entries Loki holds, without fetching them.
func Count(lokiURL, tenant, selector string) (int, error) {
	return CountOver(lokiURL, tenant, selector, time.Hour)
}

// CountOver is Count over the last span.
func CountOver(lokiURL, tenant, selector string, span time.Duration) (int, error) {
	groups, err := countBy(lokiURL, tenant, selector, "", span)
	if err != nil || len(groups) == 0 {
		return 0, err
	}
	return groups[0].N, nil
}

// Group is one label set of CountBy and its entry count.
type Group struct {
	Labels map[string]string
	N      int
}

// CountBy returns sum by (by) (count_over_time(selector[1h])) as tenant.
func CountBy(lokiURL, tenant, selector, by string) ([]Group, error) {
	return countBy(lokiURL, tenant, selector, by, time.Hour)
}

func countBy(lokiURL, tenant, selector, by string, span time.Duration) ([]Group, error) {
	v := url.Values{}
	v.Set("query", fmt.Sprintf("sum by (%s) (count_over_time(%s[%ds]))", by, selector, int(span.Seconds())))
	v.Set("time", strconv.FormatInt(time.Now().Add(time.Minute).UnixNano(), 10))
	body, err := get(lokiURL+"/loki/api/v1/query", tenant, v)
	if err != nil {
		return nil, err
	}
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	var out []Group
	for _, res := range r.Data.Result {
		s, _ := res.Value[1].(string)
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("loki count: %q: %w", s, err)
		}
		out = append(out, Group{Labels: res.Metric, N: n})
	}
	return out, nil
}

// get asks Loki's query API as tenant and returns the answer's body.
func get(endpoint, tenant string, v url.Values) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, endpoint+"?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Scope-OrgID", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loki %s as %s, query %s: %s: %s", endpoint, tenant, v.Get("query"), resp.Status, body)
	}
	return body, nil
}
