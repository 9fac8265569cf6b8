package discovery_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/podman"
)

var mapCfg = discovery.MapConfig{
	TenantLabel: "tenant", AppLabel: "application", VersionLabel: "version", RequireTenant: true,
}

func container(labels map[string]string) podman.Container {
	return podman.Container{
		ID: "0123456789abcdef", Name: "shop-1", Labels: labels, State: "running", Running: true,
		StartedAt: time.Date(2026, 11, 25, 0, 6, 14, 404991023, time.UTC),
		LogDriver: "k8s-file", LogPath: "/var/lib/containers/storage/overlay-containers/0123/userdata/ctr.log",
	}
}

func mustMap(t *testing.T, m *discovery.Mapper, c podman.Container) discovery.Target {
	t.Helper()
	tg, err := m.Map(c)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	return tg
}

// skipped asserts that Map refuses c with an error wrapping ErrSkipped whose
// text contains every part of reason.
func skipped(t *testing.T, m *discovery.Mapper, c podman.Container, reason ...string) {
	t.Helper()
	tg, err := m.Map(c)
	if err == nil {
		t.Fatalf("Map = %+v, want it skipped (%q)", tg, reason)
	}
	if !errors.Is(err, discovery.ErrSkipped) {
		t.Errorf("error %v does not wrap ErrSkipped", err)
	}
	for _, r := range reason {
		if !strings.Contains(err.Error(), r) {
			t.Errorf("error %q does not contain %q", err, r)
		}
	}
}

// A labelled k8s-file container maps to a Target carrying its ID, name,
// tenant, application, version, running state, start time (ns) and log
// path; Existing is left to discovery.
func TestMapLabelsToTarget(t *testing.T) {
	c := container(map[string]string{"tenant": "acme", "application": "shop", "version": "1.2.3", "other": "x"})
	tg := mustMap(t, discovery.NewMapper(mapCfg), c)
	want := discovery.Target{
		ID: c.ID, Name: "shop-1", Tenant: "acme", App: "shop", Version: "1.2.3", Running: true,
		Labels:    map[string]string{"tenant": "acme", "application": "shop", "version": "1.2.3", "other": "x"},
		StartedAt: c.StartedAt.UnixNano(), LogDriver: "k8s-file", LogPath: c.LogPath,
	}
	if !tg.Equal(want) {
		t.Errorf("Map =\n%+v\nwant\n%+v", tg, want)
	}
	c.Running, c.State = false, "exited"
	if tg := mustMap(t, discovery.NewMapper(mapCfg), c); tg.Running {
		t.Error("stopped container mapped as running")
	}
}

// Application and version are optional.
func TestMapWithoutOptionalLabels(t *testing.T) {
	tg := mustMap(t, discovery.NewMapper(mapCfg), container(map[string]string{"tenant": "acme"}))
	if tg.App != "" || tg.Version != "" || tg.Tenant != "acme" {
		t.Errorf("Map = %+v", tg)
	}
}

// Without a tenant label (or with an empty one) a container is skipped,
// saying which label is missing, when the tenant is required; otherwise it
// gets the default tenant, which must itself be valid.
func TestMapMissingTenant(t *testing.T) {
	for _, labels := range []map[string]string{nil, {"application": "shop"}, {"tenant": ""}} {
		skipped(t, discovery.NewMapper(mapCfg), container(labels), `no "tenant" label`)

		cfg := mapCfg
		cfg.RequireTenant, cfg.DefaultTenant = false, "fallback"
		if tg := mustMap(t, discovery.NewMapper(cfg), container(labels)); tg.Tenant != "fallback" {
			t.Errorf("labels %v: tenant = %q, want the default", labels, tg.Tenant)
		}

		cfg.DefaultTenant = ""
		skipped(t, discovery.NewMapper(cfg), container(labels), "tenant is empty")
	}
}

// A tenant Loki would refuse as X-Scope-OrgID skips the container, naming
// the label; 150 characters is still accepted.
func TestMapInvalidTenant(t *testing.T) {
	m := discovery.NewMapper(mapCfg)
	for _, tenant := range []string{"a|b", "..", ".", strings.Repeat("a", 151), "a b", "acme/x", "ünï"} {
		skipped(t, m, container(map[string]string{"tenant": tenant}), `label "tenant"`)
	}
	long := strings.Repeat("a", 150)
	if tg := mustMap(t, m, container(map[string]string{"tenant": long})); tg.Tenant != long {
		t.Errorf("150-character tenant mapped to %q", tg.Tenant)
	}
}

// Application and version values Loki would refuse (too long, not UTF-8)
// skip the container, naming the label.
func TestMapInvalidLabelValues(t *testing.T) {
	m := discovery.NewMapper(mapCfg)
	skipped(t, m, container(map[string]string{"tenant": "acme", "application": "\xff\xfe"}), `label "application"`, "UTF-8")
	skipped(t, m, container(map[string]string{"tenant": "acme", "version": strings.Repeat("v", 2049)}), `label "version"`, "2049")
	mustMap(t, m, container(map[string]string{"tenant": "acme", "version": strings.Repeat("v", 2048)}))
}

// k8s-file logs are read from their path and journald output from the
// journal (no path); a driver whose output podtail cannot read skips the
// container with a reason naming the driver and why, and so does a k8s-file
// container without a log path.
func TestMapLogDriver(t *testing.T) {
	m := discovery.NewMapper(mapCfg)
	for driver, why := range map[string]string{
		"passthrough": "stdio of whoever started", "none": "keeps no output", "": "reads k8s-file logs and the journal",
		"syslog": "reads k8s-file logs and the journal",
	} {
		c := container(map[string]string{"tenant": "acme"})
		c.LogDriver = driver
		skipped(t, m, c, `log driver "`+driver+`"`, why)
	}
	c := container(map[string]string{"tenant": "acme"})
	c.LogPath = ""
	skipped(t, m, c, "no log path")

	c = container(map[string]string{"tenant": "acme"})
	c.LogDriver, c.LogPath = "journald", ""
	tg := mustMap(t, m, c)
	if !tg.HasOutput() || tg.LogPath != "" || tg.OutputSource() != "journal CONTAINER_ID_FULL="+c.ID {
		t.Errorf("journald container mapped to %+v (output %q), want its output read from the journal", tg, tg.OutputSource())
	}
}

// files.host_prefix is joined in front of the log path (podtail in a
// container with the host's storage mounted under it).
func TestMapHostPrefix(t *testing.T) {
	cfg := mapCfg
	cfg.HostPrefix = "/host/"
	c := container(map[string]string{"tenant": "acme"})
	tg := mustMap(t, discovery.NewMapper(cfg), c)
	if want := "/host" + c.LogPath; tg.LogPath != want {
		t.Errorf("LogPath = %q, want %q", tg.LogPath, want)
	}
}

// The label keys read from the container are configurable; the default
// keys are then ignored.
func TestMapCustomLabelKeys(t *testing.T) {
	m := discovery.NewMapper(discovery.MapConfig{
		TenantLabel: "io.podtail.tenant", AppLabel: "io.podtail.app", VersionLabel: "org.opencontainers.image.version",
		RequireTenant: true,
	})
	tg := mustMap(t, m, container(map[string]string{
		"io.podtail.tenant": "acme", "io.podtail.app": "shop", "org.opencontainers.image.version": "9",
		"tenant": "wrong", "application": "wrong", "version": "wrong",
	}))
	if tg.Tenant != "acme" || tg.App != "shop" || tg.Version != "9" {
		t.Errorf("Map = %+v", tg)
	}
	skipped(t, m, container(map[string]string{"tenant": "acme"}), `no "io.podtail.tenant" label`)
}

// A target's stream labels are tenant, application and version, the last
// two only when set, with values as they are (rendering escapes them).
func TestTargetStreamLabels(t *testing.T) {
	tg := discovery.Target{Tenant: "acme", App: `sh"op\1`, Version: "v1"}
	ls := tg.StreamLabels()
	if len(ls) != 3 || ls["tenant"] != "acme" || ls["application"] != `sh"op\1` || ls["version"] != "v1" {
		t.Errorf("StreamLabels = %v", ls)
	}
	if got := (discovery.Target{Tenant: "acme"}).StreamLabels(); len(got) != 1 || got["tenant"] != "acme" {
		t.Errorf("StreamLabels without app/version = %v", got)
	}
}

// ValidTenant accepts exactly Loki's tenant IDs without '|': 1 to 150
// characters of [a-zA-Z0-9!-_.*'()], other than "." and "..".
func TestValidTenant(t *testing.T) {
	for _, s := range []string{"a", "acme", "A-Z_0.9", "!-_.*'()", "...", ".a", strings.Repeat("x", 150)} {
		if err := labels.ValidTenant(s); err != nil {
			t.Errorf("labels.ValidTenant(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range []string{"", ".", "..", "a|b", "a b", "a/b", "a\\b", "a:b", "é", "a\x00", strings.Repeat("x", 151)} {
		if err := labels.ValidTenant(s); err == nil {
			t.Errorf("labels.ValidTenant(%q) = nil, want an error", s)
		}
	}
}

// ValidLabelValue accepts UTF-8 of at most 2048 bytes, the empty value
// included.
func TestValidLabelValue(t *testing.T) {
	for _, s := range []string{"", "x", "ünïcødé", strings.Repeat("v", labels.MaxValueLength)} {
		if err := labels.ValidValue(s); err != nil {
			t.Errorf("labels.ValidValue(%.20q) = %v", s, err)
		}
	}
	for _, s := range []string{"\xff", "a\xc3", strings.Repeat("v", labels.MaxValueLength+1)} {
		if err := labels.ValidValue(s); err == nil {
			t.Errorf("labels.ValidValue(%.20q) = nil, want an error", s)
		}
	}
}

// ValidLabelName follows Prometheus' [a-zA-Z_][a-zA-Z0-9_]*.
func TestValidLabelName(t *testing.T) {
	for _, s := range []string{"a", "_", "log_level", "A9"} {
		if err := labels.ValidName(s); err != nil {
			t.Errorf("labels.ValidName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "9a", "a-b", "a.b", "a b", "é"} {
		if err := labels.ValidName(s); err == nil {
			t.Errorf("labels.ValidName(%q) = nil, want an error", s)
		}
	}
}

// FuzzValidTenant: ValidTenant never panics and agrees with a direct
// reading of Loki's rule (byte-wise, so multi-byte runes are refused).
func FuzzValidTenant(f *testing.F) {
	for _, s := range []string{"acme", "", ".", "..", "a|b", "!-_.*'()", strings.Repeat("a", 151), "é", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := labels.ValidTenant(s)
		ok := len(s) >= 1 && len(s) <= 150 && s != "." && s != ".."
		for i := 0; i < len(s) && ok; i++ {
			c := s[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!-_.*'()", c) >= 0
		}
		if ok != (err == nil) {
			t.Fatalf("labels.ValidTenant(%q) = %v, but the rule says valid=%v", s, err, ok)
		}
	})
}
