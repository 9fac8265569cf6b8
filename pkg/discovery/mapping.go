package discovery

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/podtail/podtail/pkg/podman"
)

// Loki label names podtail writes (the seed's label design).
const (
	LabelTenant      = "tenant"
	LabelApplication = "application"
	LabelVersion     = "version"
	// LabelStream tells stdout, stderr and file lines apart; bounded to those
	// three values.
	LabelStream = "stream"
)

// Target is one container podtail collects from.
type Target struct {
	ID        string
	Name      string
	Tenant    string
	App       string
	Version   string
	Running   bool
	StartedAt int64 // unix nanoseconds; a new value means the container restarted
	// Existing is true for containers that were already started when podtail
	// started (discovery.existing_from applies to them).
	Existing bool
	// LogPath is the container's k8s-file log as podtail sees it (with
	// files.host_prefix applied).
	LogPath string
}

// StreamLabels are the Loki labels every line of the target carries.
func (t Target) StreamLabels() map[string]string {
	ls := map[string]string{LabelTenant: t.Tenant}
	if t.App != "" {
		ls[LabelApplication] = t.App
	}
	if t.Version != "" {
		ls[LabelVersion] = t.Version
	}
	return ls
}

// Sources describes, for people, what podtail reads for the target.
func (t Target) Sources() []string {
	return []string{"stdout+stderr from " + t.LogPath}
}

// MapConfig says how containers become targets.
type MapConfig struct {
	TenantLabel, AppLabel, VersionLabel string
	RequireTenant                       bool
	DefaultTenant                       string
	HostPrefix                          string
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
	tenant, ok := c.Labels[m.cfg.TenantLabel]
	if !ok || tenant == "" {
		if m.cfg.RequireTenant {
			return skip("no %q label", m.cfg.TenantLabel)
		}
		tenant = m.cfg.DefaultTenant
	}
	if err := ValidTenant(tenant); err != nil {
		return skip("label %q: %v", m.cfg.TenantLabel, err)
	}
	t := Target{
		ID:      c.ID,
		Name:    c.Name,
		Tenant:  tenant,
		App:     c.Labels[m.cfg.AppLabel],
		Version: c.Labels[m.cfg.VersionLabel],
		Running: c.Running,
	}
	if !c.StartedAt.IsZero() { // never started: 0, not an overflowed UnixNano
		t.StartedAt = c.StartedAt.UnixNano()
	}
	for key, v := range map[string]string{m.cfg.AppLabel: t.App, m.cfg.VersionLabel: t.Version} {
		if err := ValidLabelValue(v); err != nil {
			return skip("label %q: %v", key, err)
		}
	}
	if c.LogDriver != "k8s-file" {
		return skip("log driver %q: podtail reads k8s-file logs (podman run --log-driver k8s-file)", c.LogDriver)
	}
	if c.LogPath == "" {
		return skip("no log path in inspect")
	}
	t.LogPath = c.LogPath
	if m.cfg.HostPrefix != "" {
		t.LogPath = filepath.Join(m.cfg.HostPrefix, c.LogPath)
	}
	return t, nil
}

// MaxLabelValueLength is Loki's default max_label_value_length.
const MaxLabelValueLength = 2048

// ValidLabelValue checks a label value against Loki's rules.
func ValidLabelValue(v string) error {
	if len(v) > MaxLabelValueLength {
		return fmt.Errorf("value is %d bytes, Loki allows %d", len(v), MaxLabelValueLength)
	}
	if !utf8.ValidString(v) {
		return errors.New("value is not valid UTF-8")
	}
	return nil
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// ValidLabelName checks a label name against Loki's (Prometheus') rules.
func ValidLabelName(n string) error {
	if !labelName.MatchString(n) {
		return fmt.Errorf("%q is not a valid Loki label name ([a-zA-Z_][a-zA-Z0-9_]*)", n)
	}
	return nil
}

// ValidTenant checks that s is a tenant ID Loki accepts as X-Scope-OrgID:
// at most 150 characters of [a-zA-Z0-9] and !-_.*'(), not "." or "..".
// ('|' separates tenants in multi-tenant queries, so it is refused too.)
func ValidTenant(s string) error {
	switch {
	case s == "":
		return errors.New("tenant is empty")
	case len(s) > 150:
		return fmt.Errorf("tenant is %d characters, Loki allows 150", len(s))
	case s == "." || s == "..":
		return fmt.Errorf("tenant %q is not allowed", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!-_.*'()", r)) {
			return fmt.Errorf("tenant %q has %q; Loki allows [a-zA-Z0-9!-_.*'()]", s, r)
		}
	}
	return nil
}
