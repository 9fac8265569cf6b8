package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// socketRecorder is a unix-socket HTTP proxy in front of the test bed's
// Podman service that records every request podtail makes.
type socketRecorder struct {
	uri string // unix:// URI to give podtail

	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	at           time.Time
	method, path string
}

func startSocketRecorder(t *testing.T) *socketRecorder {
	t.Helper()
	upstream := strings.TrimPrefix(bed.socket, "unix://")
	sock := filepath.Join(t.TempDir(), "podman.sock")
	r := &socketRecorder{uri: "unix://" + sock}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", upstream)
	}}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "d" },
		Transport:     tr,
		FlushInterval: -1, // the event stream must not wait in a buffer
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{time.Now(), req.Method, req.URL.Path})
		r.mu.Unlock()
		rp.ServeHTTP(w, req)
	})}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); tr.CloseIdleConnections() })
	return r
}

func (r *socketRecorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

// saw reports whether a request whose path matches re came at or after t.
func (r *socketRecorder) saw(re *regexp.Regexp, t time.Time) bool {
	for _, q := range r.all() {
		if !q.at.Before(t) && re.MatchString(q.path) {
			return true
		}
	}
	return false
}

// readOnlyAPI is every Podman API path podtail uses, all with GET: what a
// least-privilege socket proxy must let through (README, Security).
var readOnlyAPI = regexp.MustCompile(`^(/v[0-9.]+)?(/libpod)?/(_ping|info|version|events|containers/json|containers/[0-9a-zA-Z_.-]+/json|pods/[0-9a-zA-Z_.-]+/json)$`)

var (
	listPath    = regexp.MustCompile(`/containers/json$`)
	inspectPath = regexp.MustCompile(`/containers/[^/]+/json$`)
	eventsPath  = regexp.MustCompile(`/events$`)
)

// The Podman socket is a root-equivalent credential, and podtail only reads
// through it: a recording proxy between podtail and the socket sees `podtail
// run` through a container's whole life (create, start, output, stop, rm),
// `podtail events` and `podtail targets`, and every request is a GET to one
// of the read-only paths in readOnlyAPI.
func TestPodmanSocketReadOnly(t *testing.T) {
	needBed(t)
	rec := startSocketRecorder(t)
	startPodtail(t, podtailOpts{socket: rec.uri})

	var events syncBuffer
	ev := exec.Command(bed.podtail, "events", "--podman.socket", rec.uri)
	ev.Stdout, ev.Stderr = &events, &events
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	evDone := make(chan struct{})
	go func() { _ = ev.Wait(); close(evDone) }()
	t.Cleanup(func() {
		_ = ev.Process.Kill()
		<-evDone
	})
	eventually(t, 10*time.Second, "podtail events to subscribe", func() bool { return rec.saw(eventsPath, time.Time{}) && strings.Contains(events.String(), "DECISION") })

	tenant, cname := name("socket"), name("socket-life")
	const n = 20
	podman(t, "create", "--name", cname, "--label", "tenant="+tenant, "--label", "app=sock", "--label", "version=v1",
		bed.image, "sh", "-c", printLoop("sock", n, 0, false)+"; sleep 600")
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", "-t", "0", cname).Run() })
	podman(t, "start", cname)
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), n, 30*time.Second)
	podman(t, "stop", "-t", "1", cname)
	podman(t, "rm", cname)
	removed := time.Now()
	// A full list after the removal (reconcile_interval is 2s) means
	// podtail has been through everything it does for a removed container.
	eventually(t, 15*time.Second, "a container list after the removal", func() bool { return rec.saw(listPath, removed) })
	eventually(t, 10*time.Second, "podtail events to show the removal", func() bool {
		return strings.Contains(events.String(), "remove") && strings.Contains(events.String(), cname)
	})
	_ = ev.Process.Signal(syscall.SIGTERM)
	select {
	case <-evDone:
	case <-time.After(10 * time.Second):
		t.Fatal("podtail events did not stop on SIGTERM")
	}
	t.Logf("podtail events:\n%s", tail(events.String(), 12))

	out, err := exec.Command(bed.podtail, "targets", "--podman.socket", rec.uri).CombinedOutput()
	if err != nil {
		t.Fatalf("podtail targets: %v\n%s", err, out)
	}

	reqs := rec.all()
	kinds := map[string]int{}
	var bad []string
	for _, q := range reqs {
		path := inspectPath.ReplaceAllString(q.path, "/containers/{id}/json")
		kinds[q.method+" "+path]++
		if q.method != http.MethodGet || !readOnlyAPI.MatchString(q.path) {
			bad = append(bad, q.method+" "+q.path)
		}
	}
	var summary []string
	for k, n := range kinds {
		summary = append(summary, fmt.Sprintf("%5d %s", n, k))
	}
	sort.Strings(summary)
	t.Logf("%d requests on the Podman socket:\n%s", len(reqs), strings.Join(summary, "\n"))
	if len(bad) > 0 {
		t.Errorf("%d requests that are not reads of readOnlyAPI:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	for what, re := range map[string]*regexp.Regexp{"list": listPath, "inspect": inspectPath, "events": eventsPath} {
		if !rec.saw(re, time.Time{}) {
			t.Errorf("no %s request recorded: the recorder missed podtail's traffic", what)
		}
	}
}
