package podman

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The answers in testdata/podman-4.3.1 were recorded from Debian's Podman
// 4.3.1 API service (`podman system service`) with curl, for one container
// run as
//
//	podman run -d --name rec-demo --label tenant=beiluo --label app=test777 --label version=v15 \
//	  -v /tmp/reclogs:/app/workplace/logs localhost/podtail-busybox:latest sh -c 'echo hi; sleep 2'
//
// (the event stream followed from before the run until after cleanup). The
// fake service below serves them on a unix socket the way the real one does,
// so these tests pin the decoding against Podman's real wire format.
const recordedID = "6b342a72d1ef85473c3c3a8b7df42cd2ebd52b23ad707286189cd4e62ebcef9d"

// fakeService serves the recorded answers. endEvents: the event stream ends
// after the recorded lines (as when the service stops); otherwise it stays
// open until the client goes away.
type fakeService struct {
	t         *testing.T
	endEvents bool
	paths     chan string // every request's method and path, in order
	// refusePods answers pod inspects as a read-only proxy that does not
	// pass pods/ would: 403 with a body that is not Podman's JSON.
	refusePods bool
	// dropPods closes the connection on a pod inspect, as a service that
	// went away would.
	dropPods bool
}

var versioned = regexp.MustCompile(`^/v[0-9.]+/libpod(/.*)$`)

func (f *fakeService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.paths <- r.Method + " " + r.URL.Path
	m := versioned.FindStringSubmatch(r.URL.Path)
	if m == nil {
		http.NotFound(w, r)
		return
	}
	file := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "podman-4.3.1", name))
		if err != nil {
			f.t.Error(err)
		}
		return b
	}
	json := func(status int, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
	switch path := m[1]; {
	case path == "/_ping":
		w.Header().Set("Libpod-Api-Version", "4.3.1")
		_, _ = w.Write([]byte("OK"))
	case path == "/info":
		json(http.StatusOK, file("info.json"))
	case path == "/containers/json":
		if r.URL.Query().Get("all") != "true" {
			f.t.Errorf("list without all=true: %s", r.URL.RawQuery)
		}
		json(http.StatusOK, file("containers.json"))
	case path == "/containers/"+recordedID+"/json":
		json(http.StatusOK, file("inspect.json"))
	case path == "/containers/"+podMemberID+"/json":
		json(http.StatusOK, file("inspect-pod-member.json"))
	case path == "/containers/"+podInfraID+"/json":
		json(http.StatusOK, file("inspect-pod-infra.json"))
	case strings.HasPrefix(path, "/containers/"):
		json(http.StatusNotFound, file("inspect-404.json"))
	case strings.HasPrefix(path, "/pods/") && f.dropPods:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			f.t.Error(err)
			return
		}
		_ = conn.Close()
	case strings.HasPrefix(path, "/pods/") && f.refusePods:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("<html><body>403 Forbidden</body></html>"))
	case path == "/pods/"+recordedPodID+"/json":
		json(http.StatusOK, file("pod-inspect.json"))
	case strings.HasPrefix(path, "/pods/"):
		json(http.StatusNotFound, file("pod-404.json"))
	case path == "/events":
		if got := r.URL.Query().Get("filters"); got != `{"type":["container"]}` {
			f.t.Errorf("events filters = %q", got)
		}
		w.WriteHeader(http.StatusOK)
		for _, line := range bytes.SplitAfter(file("events.jsonl"), []byte("\n")) {
			_, _ = w.Write(line)
			w.(http.Flusher).Flush()
		}
		if !f.endEvents {
			<-r.Context().Done()
		}
	default:
		http.NotFound(w, r)
	}
}

func startService(t *testing.T, endEvents bool) (uri string, f *fakeService) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "podman.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f = &fakeService{t: t, endEvents: endEvents, paths: make(chan string, 100)}
	srv := &http.Server{Handler: f}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "unix://" + sock, f
}

func connectTo(t *testing.T, uri string) *Client {
	t.Helper()
	c, err := Connect(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Storage, List and Inspect turn Podman 4.3.1's answers into podtail's
// facts: the storage root and log driver, every container with its state,
// and a container's labels, log file and bind mounts.
func TestRecordedAnswers(t *testing.T) {
	uri, _ := startService(t, false)
	c := connectTo(t, uri)
	ctx := context.Background()

	st, err := c.Storage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (Storage{GraphRoot: "/var/lib/containers/storage", Driver: "overlay", LogDriver: "k8s-file"}) {
		t.Errorf("Storage = %+v", st)
	}
	if got, want := st.DefaultLogPath(recordedID), "/var/lib/containers/storage/overlay-containers/"+recordedID+"/userdata/ctr.log"; got != want {
		t.Errorf("DefaultLogPath = %q, want %q", got, want)
	}

	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0] != (Summary{ID: recordedID, Name: "rec-demo", State: "exited", StartedAt: 1796395362}) {
		t.Errorf("List = %+v", list)
	}

	ct, err := c.Inspect(ctx, recordedID)
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{"tenant": "beiluo", "app": "test777", "version": "v15"}
	if len(ct.Labels) != len(wantLabels) {
		t.Errorf("Labels = %v, want %v", ct.Labels, wantLabels)
	}
	for k, v := range wantLabels {
		if ct.Labels[k] != v {
			t.Errorf("Labels[%s] = %q, want %q", k, ct.Labels[k], v)
		}
	}
	started, _ := time.Parse(time.RFC3339Nano, "2026-12-04T14:42:42.442764088Z")
	if ct.ID != recordedID || ct.Name != "rec-demo" || ct.Image != "localhost/podtail-busybox:latest" ||
		ct.State != "exited" || ct.Running || !ct.StartedAt.Equal(started) ||
		ct.LogDriver != "k8s-file" || ct.LogPath != st.DefaultLogPath(recordedID) {
		t.Errorf("Inspect = %+v", ct)
	}
	if len(ct.Mounts) != 1 || ct.Mounts[0] != (Mount{Type: "bind", Source: "/tmp/reclogs", Destination: "/app/workplace/logs", RW: true}) {
		t.Errorf("Mounts = %+v", ct.Mounts)
	}

	_, err = c.Inspect(ctx, "0000000000000000")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Inspect of an unknown container: %v, want ErrNotFound", err)
	}
}

// Events delivers each recorded event with its action, ID, name, labels and
// nanosecond time, in order; subscribed is called before the first; the
// stream ending is an error (events may have been missed), ctx ending is not.
func TestRecordedEvents(t *testing.T) {
	want := []string{"create", "init", "start", "died", "cleanup"}
	for _, end := range []bool{true, false} {
		uri, _ := startService(t, end)
		c := connectTo(t, uri)
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan Event, 10)
		subscribed := false
		errc := make(chan error, 1)
		go func() { errc <- c.Events(ctx, out, func() { subscribed = len(out) == 0 }) }()
		for i, action := range want {
			select {
			case ev := <-out:
				if ev.Action != action || ev.ID != recordedID || ev.Name != "rec-demo" ||
					ev.Image != "localhost/podtail-busybox:latest" || ev.Attributes["tenant"] != "beiluo" ||
					ev.ExitCode != "0" || ev.Time.UnixNano() < 1796395361606346954 {
					t.Errorf("event %d = %+v, want %s of rec-demo", i, ev, action)
				}
				if i == 0 && ev.Time.UnixNano() != 1796395361606346954 {
					t.Errorf("create at %d ns, want timeNano 1796395361606346954", ev.Time.UnixNano())
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("event %d (%s) did not arrive", i, action)
			}
		}
		if !end {
			cancel()
		}
		select {
		case err := <-errc:
			switch {
			case end && (err == nil || !strings.Contains(err.Error(), "event stream ended")):
				t.Errorf("stream ended by the service: Events = %v, want an error", err)
			case !end && err != nil:
				t.Errorf("ctx cancelled: Events = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Events did not return")
		}
		cancel()
		if !subscribed {
			t.Error("subscribed was not called before the first event")
		}
	}
}

// The requests podtail makes are GETs under /libpod, and nothing else: the
// socket is a root-equivalent credential (e2e/socket_test.go checks the
// same against the real service).
func TestOnlyReads(t *testing.T) {
	uri, f := startService(t, true)
	c := connectTo(t, uri)
	ctx := context.Background()
	_, _ = c.Storage(ctx)
	_, _ = c.List(ctx)
	_, _ = c.Inspect(ctx, recordedID)
	_, _ = c.Inspect(ctx, podMemberID)
	_ = c.Events(ctx, make(chan Event, 10), nil)
	close(f.paths)
	n := 0
	for p := range f.paths {
		n++
		if !strings.HasPrefix(p, "GET /v") || !versioned.MatchString(strings.TrimPrefix(p, "GET ")) {
			t.Errorf("request %q", p)
		}
	}
	if n < 7 {
		t.Errorf("%d requests seen, want ping, info, list, two inspects, the pod's and events", n)
	}
}

// A socket that is not there is named in the error, with what to check.
func TestConnectMissingSocket(t *testing.T) {
	uri := "unix://" + filepath.Join(t.TempDir(), "nope.sock")
	_, err := Connect(context.Background(), uri)
	if err == nil || !strings.Contains(err.Error(), uri) || !strings.Contains(err.Error(), "podman system service") {
		t.Errorf("Connect(%s) = %v", uri, err)
	}
}

// Containers' userdata lives under <graphroot>/<driver>-containers: a vfs
// store (common rootless) is not overlay's, and a journald default has no
// default log path.
func TestStorageDefaultLogPathByDriver(t *testing.T) {
	for _, tc := range []struct {
		st   Storage
		want string
	}{
		{Storage{GraphRoot: "/g", Driver: "overlay", LogDriver: "k8s-file"}, "/g/overlay-containers/x/userdata/ctr.log"},
		{Storage{GraphRoot: "/g", Driver: "vfs", LogDriver: "k8s-file"}, "/g/vfs-containers/x/userdata/ctr.log"},
		{Storage{GraphRoot: "/g", LogDriver: "k8s-file"}, "/g/overlay-containers/x/userdata/ctr.log"},
		{Storage{GraphRoot: "/g", Driver: "vfs", LogDriver: "journald"}, ""},
		{Storage{Driver: "vfs", LogDriver: "k8s-file"}, ""},
	} {
		if got := tc.st.DefaultLogPath("x"); got != tc.want {
			t.Errorf("%+v: DefaultLogPath = %q, want %q", tc.st, got, tc.want)
		}
	}
}
