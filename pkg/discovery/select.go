package discovery

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/podtail/podtail/pkg/podman"
)

// SelectRule is one rule of discovery.select (made by NewSelectRule), as
// Prometheus' relabel keep and drop actions: keep drops a container whose
// source value does not match, drop one whose value matches; a container is
// collected only if no rule drops it. Rules apply in order and the first
// that drops decides, so its index is the one named.
type SelectRule struct {
	Action string // keep or drop
	// Source is what the regex is matched against: name, image, pod (its
	// name), or label:<name> (the container's label over its pod's, as
	// mapping sees them; "" when absent).
	Source string
	Regex  string // as configured, for messages
	re     *regexp.Regexp
}

// NewSelectRule compiles one rule; the regex is anchored at both ends, as
// Prometheus' is, so "podtail" does not select "podtail-test".
func NewSelectRule(action, source, regex string) (SelectRule, error) {
	r := SelectRule{Action: action, Source: source, Regex: regex}
	if action != "keep" && action != "drop" {
		return SelectRule{}, fmt.Errorf("action %q is not one of keep, drop", action)
	}
	switch {
	case source == "name", source == "image", source == "pod":
	case strings.HasPrefix(source, "label:") && len(source) > len("label:"):
	default:
		return SelectRule{}, fmt.Errorf("source %q is not one of name, image, pod, label:<name>", source)
	}
	var err error
	if r.re, err = regexp.Compile("^(?:" + regex + ")$"); err != nil {
		return SelectRule{}, fmt.Errorf("regex: %w", err)
	}
	return r, nil
}

// value is what the rule looks at in c, whose labels (with its pod's) are ls.
func (r SelectRule) value(c podman.Container, ls map[string]string) string {
	switch r.Source {
	case "name":
		return c.Name
	case "image":
		return c.Image
	case "pod":
		return c.Pod
	}
	return ls[strings.TrimPrefix(r.Source, "label:")]
}

// selected returns nil when the select rules keep c, or why it is dropped,
// naming the rule by its key, e.g. discovery.select[1] (drop, name "podtail"
// matches "podtail.*").
func (m *Mapper) selected(c podman.Container, ls map[string]string) error {
	for i, r := range m.cfg.Select {
		v := r.value(c, ls)
		match := r.re.MatchString(v)
		if match == (r.Action == "keep") {
			continue
		}
		how := "matches"
		if !match {
			how = "does not match"
		}
		note := ""
		if r.Source != "name" && r.Source != "image" {
			note = m.podUnknown(c) // the value may be the pod's, which is not known
		}
		return fmt.Errorf("dropped by discovery.select[%d] (%s, %s %q %s %q)%s", i, r.Action, r.Source, v, how, r.Regex, note)
	}
	return nil
}
