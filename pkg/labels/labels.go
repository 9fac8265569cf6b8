// Package labels holds Loki's rules for podtail's labels and tenants, and
// the defaults of the seed's log layout: shared by configuration (which
// validates) and discovery (which maps).
package labels

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Loki label names podtail writes (the seed's label design).
const (
	Tenant      = "tenant"
	Application = "application"
	Version     = "version"
	// Stream tells stdout, stderr and file lines apart; bounded to those
	// three values.
	Stream = "stream"
)

// Defaults for the seed's layout:
// namespace/{user}/{app}/workplace/logs/{user}_{app}_{version}.log, with
// lumberjack's backups {name}-2006-01-02T15-04-05.000.log[.gz].
const (
	DefaultMountSuffix = "workplace/logs"
	DefaultPathRegex   = `namespace/(?P<tenant>[^/]+)/(?P<application>[^/]+)/workplace/logs/?$`
	DefaultNameRegex   = `^(?P<user>[^_]+)_(?P<application>.+)_(?P<version>v[0-9]+)(?:-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3})?\.log(?:\.gz)?$`
)

// MaxValueLength is Loki's default max_label_value_length.
const MaxValueLength = 2048

// ValidValue checks a label value against Loki's rules.
func ValidValue(v string) error {
	if len(v) > MaxValueLength {
		return fmt.Errorf("value is %d bytes, Loki allows %d", len(v), MaxValueLength)
	}
	if !utf8.ValidString(v) {
		return errors.New("value is not valid UTF-8")
	}
	return nil
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// ValidName checks a label name against Loki's (Prometheus') rules.
func ValidName(n string) error {
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

// CutValue makes v a label value Loki accepts: valid UTF-8 (invalid bytes
// become U+FFFD) of at most max bytes, cut on a character boundary. It
// reports whether v had to change. max < 1 means MaxValueLength.
func CutValue(v string, max int) (string, bool) {
	if max < 1 {
		max = MaxValueLength
	}
	changed := false
	if !utf8.ValidString(v) {
		v, changed = strings.ToValidUTF8(v, "\uFFFD"), true
	}
	if len(v) <= max {
		return v, changed
	}
	for max > 0 && !utf8.RuneStart(v[max]) {
		max--
	}
	return v[:max], true
}

// Sanitize returns the label set Loki is sent for ls: names that are not
// valid label names or start with "__" (Loki's own) are left out, empty
// values too (Loki treats them as absent), and every value is made valid
// UTF-8 of at most maxValue bytes (see CutValue). It reports how many values
// were cut or repaired and how many labels were left out; ls is not changed.
func Sanitize(ls map[string]string, maxValue int) (out map[string]string, cut, dropped int) {
	out = make(map[string]string, len(ls))
	for n, v := range ls {
		if ValidName(n) != nil || strings.HasPrefix(n, "__") || v == "" {
			dropped++
			continue
		}
		v, changed := CutValue(v, maxValue)
		if changed {
			cut++
		}
		if v == "" { // a value of only a long first character cut to nothing
			dropped++
			continue
		}
		out[n] = v
	}
	return out, cut, dropped
}
