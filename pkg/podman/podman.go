// Package podman is the only package that talks to the Podman API (through
// github.com/containers/podman/v5/pkg/bindings). It connects, lists, inspects
// and follows events, and turns Podman's answers into the few facts the rest
// of podtail needs. It only reads: podtail never creates, execs in or removes
// containers, because the socket is a root-equivalent credential.
//
// It uses the bindings' connection (socket and URI handling, the version
// prefix, error answers) and decodes the five answers it reads into types of
// its own (api.go), not the bindings' containers, pods and system packages:
// those link Podman's image, storage and signing stacks, about 500 packages,
// which made podtail's binary 23 MB larger and its resident memory 12.7 MB
// larger (the binary's pages that their init code touches), for four GETs.
package podman

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
)

// Container is what podtail knows about one container.
type Container struct {
	ID        string
	Name      string
	Image     string
	Labels    map[string]string
	State     string // created, running, exited, ...
	Running   bool   // the process runs now (see Alive for "may still write")
	StartedAt time.Time
	// LogDriver and LogPath say where the container's stdout/stderr is
	// written; podtail reads the k8s-file log directly (nanosecond times,
	// byte positions, no Podman CPU).
	LogDriver string
	LogPath   string
	Mounts    []Mount
	// PodID is the container's pod ("" when in none); Pod is its name and
	// PodLabels its labels (nil when in none). When the service could not
	// say them (the pod was removed meanwhile, or a proxy refuses pods/),
	// PodErr says why and Pod and PodLabels are empty.
	PodID     string
	Pod       string
	PodLabels map[string]string
	PodErr    error
	// Infra marks a pod's infra container: Podman's pause process, which
	// holds the pod's namespaces, carries the pod's labels and writes no
	// output of the pod's apps.
	Infra bool
}

// Mount is one mount of a container.
type Mount struct {
	Type        string // bind or volume (a named volume; Source is its host path)
	Name        string // a volume's name
	Source      string // host path (a volume's _data directory)
	Destination string // path inside the container
	RW          bool
}

// Summary is a container as the list call reports it: enough to tell
// whether an inspect is due.
type Summary struct {
	ID        string
	Name      string
	State     string
	StartedAt int64 // Unix seconds; 0 when never started
}

// Event is one container event.
type Event struct {
	Time       time.Time
	Action     string // create, init, start, died, cleanup, remove, ...
	ID         string
	Name       string
	Image      string
	Attributes map[string]string // container labels, flattened
	ExitCode   string
}

// ErrNotFound says a container no longer exists.
var ErrNotFound = errors.New("no such container")

// Client is a connection to one Podman API service.
type Client struct {
	uri  string
	conn *bindings.Connection
	pods podCache
}

// Candidates lists the sockets tried when none is configured, in order:
// CONTAINER_HOST, the rootless socket, the rootful one.
func Candidates() []string {
	var out []string
	if h := os.Getenv("CONTAINER_HOST"); h != "" {
		out = append(out, h)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		out = append(out, "unix://"+filepath.Join(d, "podman", "podman.sock"))
	}
	return append(out, "unix:///run/podman/podman.sock")
}

// Connect opens a connection to the socket uri; an empty uri tries
// Candidates() in order and takes the first that answers. The error names
// every socket tried and why it failed.
func Connect(ctx context.Context, uri string) (*Client, error) {
	uris := []string{uri}
	if uri == "" {
		uris = Candidates()
	}
	var errs []error
	for _, u := range uris {
		c, err := connect(ctx, u)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func connect(ctx context.Context, uri string) (*Client, error) {
	if path, ok := strings.CutPrefix(uri, "unix://"); ok {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("podman socket %s: %w (is 'podman system service' running, and the socket mounted?)", uri, err)
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := bindings.NewConnection(pingCtx, uri)
	if err != nil {
		return nil, fmt.Errorf("podman socket %s: %w", uri, err)
	}
	c, err := bindings.GetClient(conn)
	if err != nil {
		return nil, fmt.Errorf("podman socket %s: %w", uri, err)
	}
	return &Client{uri: uri, conn: c}, nil
}

// URI is the socket this client talks to.
func (c *Client) URI() string { return c.uri }

// get asks the service for endpoint (under /libpod, with the version prefix
// the bindings add) and decodes the answer into out; an error answer comes
// back as the bindings' error, which carries the status (Code()).
func (c *Client) get(ctx context.Context, endpoint string, params url.Values, out any, pathValues ...string) error {
	resp, err := c.conn.DoRequest(ctx, nil, http.MethodGet, endpoint, params, nil, pathValues...)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return resp.Process(out)
}

// Storage is what podtail needs of the service's storage setup.
type Storage struct {
	GraphRoot string // e.g. /var/lib/containers/storage
	// Driver is the storage driver (overlay, vfs, ...): containers' own
	// files are under <GraphRoot>/<Driver>-containers.
	Driver    string
	LogDriver string // the default log driver, e.g. k8s-file or journald
}

// Storage asks the service for its storage root and default log driver.
func (c *Client) Storage(ctx context.Context) (Storage, error) {
	var info apiInfo
	if err := c.get(ctx, "/info", nil, &info); err != nil {
		return Storage{}, fmt.Errorf("podman %s: info: %w", c.uri, err)
	}
	return Storage{GraphRoot: info.Store.GraphRoot, Driver: info.Store.GraphDriverName, LogDriver: info.Host.LogDriver}, nil
}

// ContainersDir is the directory holding each container's userdata
// (overlay-containers for overlay, vfs-containers for vfs, ...), or "" when
// the service did not say.
func (s Storage) ContainersDir() string {
	if s.GraphRoot == "" {
		return ""
	}
	driver := s.Driver
	if driver == "" {
		driver = "overlay" // Podman 4.3 and 5 always report it; a guess only for a service that does not
	}
	return filepath.Join(s.GraphRoot, driver+"-containers")
}

// DefaultLogPath is where conmon writes a container's k8s-file log when no
// path is configured: known from the ID alone, before any inspect, which
// corrects it (a container created with --log-opt path=).
func (s Storage) DefaultLogPath(id string) string {
	if s.LogDriver != LogDriverFile || s.ContainersDir() == "" {
		return ""
	}
	return filepath.Join(s.ContainersDir(), id, "userdata", "ctr.log")
}

// Log drivers podtail reads.
const (
	LogDriverFile    = "k8s-file"
	LogDriverJournal = "journald"
)

// ContainerFromEvent is what an event tells of a container: its labels
// (the event's attributes, less Podman's own), names and pod ID. Used before
// an inspect, which may block until a short-lived --rm container is gone.
// Infra is a guess from Podman's default infra name (<pod ID>-infra, 12
// characters of it); the inspect that follows says for sure.
func ContainerFromEvent(ev Event) Container {
	labels := make(map[string]string, len(ev.Attributes))
	for k, v := range ev.Attributes {
		switch k {
		case "name", "image", "podId", "containerExitCode":
		default:
			labels[k] = v
		}
	}
	pod := ev.Attributes["podId"]
	return Container{ID: ev.ID, Name: ev.Name, Image: ev.Image, Labels: labels, State: "created",
		PodID: pod, Infra: pod != "" && ev.Name == Short(pod)+"-infra"}
}

// List returns every container, running or not: a stopped container's log
// may not have been shipped yet.
func (c *Client) List(ctx context.Context) ([]Summary, error) {
	var list []apiListContainer
	if err := c.get(ctx, "/containers/json", url.Values{"all": {"true"}}, &list); err != nil {
		return nil, fmt.Errorf("podman %s: list containers: %w", c.uri, err)
	}
	out := make([]Summary, 0, len(list))
	for _, l := range list {
		s := Summary{ID: l.ID, State: l.State, StartedAt: max(l.StartedAt, 0)}
		if len(l.Names) > 0 {
			s.Name = l.Names[0]
		}
		out = append(out, s)
	}
	return out, nil
}

// Inspect returns one container's details, its pod's name and labels
// included (see Container.PodErr), or an error wrapping ErrNotFound.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	var d apiInspect
	if err := c.get(ctx, "/containers/%s/json", nil, &d, id); err != nil {
		var ee interface{ Code() int }
		if errors.As(err, &ee) && ee.Code() == http.StatusNotFound || strings.Contains(err.Error(), "no such container") {
			return Container{}, fmt.Errorf("inspect %s: %w", Short(id), ErrNotFound)
		}
		return Container{}, fmt.Errorf("podman %s: inspect %s: %w", c.uri, Short(id), err)
	}
	ct := Container{ID: d.ID, Name: d.Name, Image: d.ImageName, Labels: d.Config.Labels,
		State: d.State.Status, Running: d.State.Running, StartedAt: d.State.StartedAt,
		LogDriver: d.HostConfig.LogConfig.Type, LogPath: d.HostConfig.LogConfig.Path,
		PodID: d.Pod, Infra: d.IsInfra}
	for _, m := range d.Mounts {
		// A named volume's Source is its host directory (<graphroot>/volumes/
		// <name>/_data for the local driver), as for a bind mount.
		ct.Mounts = append(ct.Mounts, Mount{Type: m.Type, Name: m.Name, Source: m.Source, Destination: m.Destination, RW: m.RW})
	}
	if err := c.withPod(ctx, &ct); err != nil {
		return Container{}, fmt.Errorf("inspect %s: %w", Short(id), err)
	}
	return ct, nil
}

// Events follows container events until ctx ends or the stream breaks, and
// sends each to out. It returns nil only when ctx ended; any other return
// means the stream is gone (or a line could not be decoded) and the caller
// should reconnect and reconcile, since events may have been missed.
//
// subscribed, if not nil, is called once the service has accepted the
// subscription, so a caller can list containers after it without a gap.
func (c *Client) Events(ctx context.Context, out chan<- Event, subscribed func()) error {
	params := url.Values{"stream": {"true"}, "filters": {`{"type":["container"]}`}}
	resp, err := c.conn.DoRequest(ctx, nil, http.MethodGet, "/events", params, nil)
	if err != nil {
		return fmt.Errorf("podman %s: events: %w", c.uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("podman %s: events: %w", c.uri, resp.Process(nil))
	}
	if subscribed != nil {
		subscribed()
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var e apiEvent
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("podman %s: event stream ended: %w", c.uri, err)
		}
		select {
		case out <- e.event():
		case <-ctx.Done():
			return nil
		}
	}
}

// Alive says whether a container in state may still write logs: created,
// initialized, running, paused. Readers start at create, before the app's
// first line (an app can rotate its first log file away within
// milliseconds of starting), and drain only once it has stopped.
func Alive(state string) bool {
	switch state {
	case "created", "configured", "initialized", "running", "paused":
		return true
	}
	return false
}

// UnixOrZero is t in Unix seconds, 0 for the zero time (a container never
// started), as List reports it.
func UnixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// Short is the 12-character form of a container ID.
func Short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
