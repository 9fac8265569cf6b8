package discovery

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/podman"
)

// Target is one container podtail collects from.
type Target struct {
	ID      string
	Name    string
	Image   string
	Pod     string // the pod's name, "" when in none
	Tenant  string
	App     string
	Version string
	// Labels are the container's labels (the pod's where discovery.pod_labels
	// filled tenant, app or version from them), for pipeline.apps selectors.
	Labels map[string]string
	// Static are static_labels, on every stream of the target.
	Static map[string]string
	// Metadata is the structured metadata of every entry of the target
	// (source_metadata): container, image, pod, host, by name.
	Metadata map[string]string
	// Running: the container may still write (created, running, paused);
	// its readers drain when it turns false.
	Running   bool
	StartedAt int64 // unix nanoseconds; a new value means the container restarted
	// Existing is true for containers that were already started when podtail
	// started (discovery.existing_from applies to them).
	Existing bool
	// LogDriver is where the container's output goes: podman.LogDriverFile
	// (read from LogPath) or podman.LogDriverJournal (read from the journal
	// by CONTAINER_ID_FULL); empty for a target of files only.
	LogDriver string
	// LogPath is the container's k8s-file log as podtail sees it (with
	// files.host_prefix applied); empty for journald and for files only.
	LogPath string
	// LogDirs are directories whose log files are tailed for the target:
	// bind mounts matching the file rules, or a static directory.
	LogDirs []LogDir
}

// LogDir is a directory of log files.
type LogDir struct {
	Path   string // as podtail sees it (host_prefix applied)
	Source string // on the host, as Podman reports it
	// Volume is the named volume the directory is, "" for a bind mount or
	// a static directory; for people.
	Volume string
	// Labels are the labels the path rule gave (application, version).
	Labels map[string]string
	globs  []string // files.include, for people (describe)
}

// describe says, for people, which files of the directory are read.
func (d LogDir) describe() string {
	s := filepath.Join(d.Path, "*.log")
	switch len(d.globs) {
	case 0:
	case 1:
		s = filepath.Join(d.Path, d.globs[0])
	default:
		s = filepath.Join(d.Path, "{"+strings.Join(d.globs, ",")+"}")
	}
	if d.Volume != "" {
		s += " (volume " + d.Volume + ")"
	}
	return s
}

// Equal reports whether two targets are the same (Target holds slices).
func (t Target) Equal(o Target) bool {
	if len(t.LogDirs) != len(o.LogDirs) {
		return false
	}
	for i := range t.LogDirs {
		if t.LogDirs[i].Path != o.LogDirs[i].Path || !maps.Equal(t.LogDirs[i].Labels, o.LogDirs[i].Labels) {
			return false
		}
	}
	a, b := t, o
	a.LogDirs, b.LogDirs = nil, nil
	return reflect.DeepEqual(a, b)
}

// HasOutput says whether the container's stdout and stderr are read.
func (t Target) HasOutput() bool {
	return t.LogPath != "" || t.LogDriver == podman.LogDriverJournal
}

// OutputSource says, for people, where the container's output is read from:
// a file path or the journal.
func (t Target) OutputSource() string {
	switch {
	case t.LogDriver == podman.LogDriverJournal:
		return "journal CONTAINER_ID_FULL=" + t.ID
	case t.LogPath != "":
		return t.LogPath
	}
	return ""
}

// StreamLabels are the Loki labels every line of the target carries.
func (t Target) StreamLabels() map[string]string {
	ls := make(map[string]string, len(t.Static)+3)
	for k, v := range t.Static {
		ls[k] = v
	}
	ls[labels.Tenant] = t.Tenant
	if t.App != "" {
		ls[labels.Application] = t.App
	}
	if t.Version != "" {
		ls[labels.Version] = t.Version
	}
	return ls
}

// Sources describes, for people, what podtail reads for the target.
func (t Target) Sources() []string {
	var out []string
	if src := t.OutputSource(); src != "" {
		out = append(out, "stdout+stderr ("+t.LogDriver+") from "+src)
	}
	for _, d := range t.LogDirs {
		out = append(out, "files "+d.describe())
	}
	return out
}

// MapConfig says how containers become targets.
type MapConfig struct {
	TenantLabel, AppLabel, VersionLabel string
	RequireTenant                       bool
	DefaultTenant                       string
	// PodLabels: a container in a pod whose own labels lack the tenant,
	// app or version label takes the pod's (discovery.pod_labels).
	PodLabels bool
	// Select keeps or drops containers, in order (discovery.select).
	Select     []SelectRule
	HostPrefix string
	Files      *FileRules // nil: no files from mounts
	Shared     Shared
}

// Shared is what every target carries, whichever discoverer found it.
type Shared struct {
	// StaticLabels are static_labels, on every stream.
	StaticLabels map[string]string
	// Metadata names the source facts put on every entry as structured
	// metadata (source_metadata): container, image, pod, host.
	Metadata []string
	// Host is this host's name, for the host metadata: read once at start
	// (os.Hostname), so that every target of a run says the same.
	Host string
}

// static is the static labels of a target; nil when there are none, so
// that targets compare equal however the configuration spelled "none".
func (s Shared) static() map[string]string {
	if len(s.StaticLabels) == 0 {
		return nil
	}
	return s.StaticLabels
}

// metadata is the structured metadata of a target from its facts; a fact
// it does not have (a pod for a container in none, a container for a
// static directory), or that a static label names, is left out rather than
// sent empty or twice.
func (s Shared) metadata(container, image, pod string) map[string]string {
	var md map[string]string
	for _, name := range s.Metadata {
		var v string
		switch name {
		case "container":
			v = container
		case "image":
			v = image
		case "pod":
			v = pod
		case "host":
			v = s.Host
		}
		if _, isLabel := s.StaticLabels[name]; v == "" || isLabel {
			// A static label of the same name says it already, on every
			// stream; as metadata too, Loki would rename it host_extracted
			// and | host="..." would filter on the label only.
			continue
		}
		if md == nil {
			md = make(map[string]string, len(s.Metadata))
		}
		md[name] = v
	}
	return md
}

// Mapper turns containers into targets, or says why not.
type Mapper struct{ cfg MapConfig }

// NewMapper returns a Mapper for cfg.
func NewMapper(cfg MapConfig) *Mapper { return &Mapper{cfg: cfg} }

// ErrSkipped wraps every reason a container is not collected.
var ErrSkipped = errors.New("not collected")

// Map returns the target for c, or an error wrapping ErrSkipped that says why
// it is not collected.
func (m *Mapper) Map(c podman.Container) (Target, error) {
	skip := func(format string, args ...any) (Target, error) {
		return Target{}, fmt.Errorf("%w: "+format, append([]any{ErrSkipped}, args...)...)
	}
	if c.Infra {
		// It carries the pod's labels, so it would be collected as one of
		// the pod's apps, and its output is never theirs.
		return skip("the infra container of pod %q (Podman's pause process, not an app)", c.Pod)
	}
	ls := m.labels(c)
	if err := m.selected(c, ls); err != nil {
		return skip("%v", err)
	}
	tenant := ls[m.cfg.TenantLabel]
	if tenant == "" {
		if m.cfg.RequireTenant {
			return skip("no %q label%s", m.cfg.TenantLabel, m.podUnknown(c))
		}
		tenant = m.cfg.DefaultTenant
	}
	if err := labels.ValidTenant(tenant); err != nil {
		return skip("label %q: %v", m.cfg.TenantLabel, err)
	}
	t := Target{
		ID:       c.ID,
		Name:     c.Name,
		Image:    c.Image,
		Pod:      c.Pod,
		Tenant:   tenant,
		App:      ls[m.cfg.AppLabel],
		Version:  ls[m.cfg.VersionLabel],
		Labels:   ls,
		Static:   m.cfg.Shared.static(),
		Metadata: m.cfg.Shared.metadata(c.Name, c.Image, c.Pod),
		Running:  c.Running || podman.Alive(c.State),
	}
	if !c.StartedAt.IsZero() { // never started: 0, not an overflowed UnixNano
		t.StartedAt = c.StartedAt.UnixNano()
	}
	for key, v := range map[string]string{m.cfg.AppLabel: t.App, m.cfg.VersionLabel: t.Version} {
		if err := labels.ValidValue(v); err != nil {
			return skip("label %q: %v", key, err)
		}
	}
	switch c.LogDriver {
	case podman.LogDriverFile:
		if c.LogPath == "" {
			return skip("log driver k8s-file but no log path in inspect")
		}
		t.LogDriver, t.LogPath = c.LogDriver, c.LogPath
		if m.cfg.HostPrefix != "" {
			t.LogPath = filepath.Join(m.cfg.HostPrefix, c.LogPath)
		}
	case podman.LogDriverJournal:
		t.LogDriver = c.LogDriver
	case "passthrough", "passthrough-tty":
		return skip("log driver %q: the output goes straight to the stdio of whoever started the container, nowhere podtail can read (use k8s-file or journald)", c.LogDriver)
	case "none":
		return skip("log driver \"none\": Podman keeps no output (use k8s-file or journald)")
	default:
		return skip("log driver %q: podtail reads k8s-file logs and the journal (journald)", c.LogDriver)
	}
	if m.cfg.Files != nil {
		t.LogDirs = m.cfg.Files.Dirs(c.Mounts, m.cfg.HostPrefix)
	}
	return t, nil
}

// labels are the container's labels over its pod's (with pod_labels): a
// container's own empty value does not hide the pod's, since an empty
// tenant, application or version says nothing. A new map: the target keeps
// it, and Podman's answer may be shared.
func (m *Mapper) labels(c podman.Container) map[string]string {
	var pod map[string]string
	if m.cfg.PodLabels {
		pod = c.PodLabels
	}
	if len(c.Labels)+len(pod) == 0 {
		return nil
	}
	ls := make(map[string]string, len(c.Labels)+len(pod))
	for k, v := range pod {
		ls[k] = v
	}
	for k, v := range c.Labels {
		if v != "" || ls[k] == "" {
			ls[k] = v
		}
	}
	return ls
}

// podUnknown explains, for a container missing a label, that its pod's
// labels could have had it but could not be read.
func (m *Mapper) podUnknown(c podman.Container) string {
	if !m.cfg.PodLabels || c.PodErr == nil {
		return ""
	}
	return fmt.Sprintf(" (and its pod's labels are unknown: %v)", c.PodErr)
}
