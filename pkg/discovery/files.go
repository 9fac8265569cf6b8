package discovery

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/podman"
)

// FileRules say which directories hold app log files and what labels their
// paths and names give.
type FileRules struct {
	// MountSuffixes: a bind mount whose source or destination ends with one
	// of these (whole path components) is a log directory.
	MountSuffixes []string
	// PathRegex, matched against a directory's host path, may name groups
	// tenant (static directories only), application and version.
	PathRegex *regexp.Regexp
	// NameRegex, matched against a file name, may name groups application
	// and version; a version in a file's name wins for that file's lines.
	NameRegex *regexp.Regexp
}

// NewFileRules compiles the rules, naming the key of a bad one.
func NewFileRules(suffixes []string, pathRegex, nameRegex string) (*FileRules, error) {
	r := &FileRules{}
	for _, s := range suffixes {
		if s = strings.Trim(filepath.Clean("/"+s), "/"); s != "" {
			r.MountSuffixes = append(r.MountSuffixes, s)
		}
	}
	var err error
	if pathRegex != "" {
		if r.PathRegex, err = regexp.Compile(pathRegex); err != nil {
			return nil, fmt.Errorf("files.path_regex: %w", err)
		}
	}
	if nameRegex != "" {
		if r.NameRegex, err = regexp.Compile(nameRegex); err != nil {
			return nil, fmt.Errorf("files.name_regex: %w", err)
		}
	}
	return r, nil
}

// Dirs returns the log directories among a container's bind mounts.
func (r *FileRules) Dirs(mounts []podman.Mount, hostPrefix string) []LogDir {
	var out []LogDir
	for _, m := range mounts {
		if m.Type != "bind" || !(r.matches(m.Source) || r.matches(m.Destination)) {
			continue
		}
		out = append(out, LogDir{
			Path:   filepath.Join(hostPrefix, m.Source),
			Source: m.Source,
			Labels: r.pathLabels(m.Source),
		})
	}
	return out
}

func (r *FileRules) matches(p string) bool {
	p = strings.Trim(filepath.Clean("/"+p), "/")
	for _, s := range r.MountSuffixes {
		if p == s || strings.HasSuffix(p, "/"+s) {
			return true
		}
	}
	return false
}

// pathLabels are the path rule's labels for a directory; a value Loki
// would refuse (invalid UTF-8, too long) is left out, since directory names
// are not always the platform's to choose.
func (r *FileRules) pathLabels(path string) map[string]string {
	ls := groups(r.PathRegex, filepath.Clean(path), labels.Tenant, labels.Application, labels.Version)
	maps.DeleteFunc(ls, func(_, v string) bool { return labels.ValidValue(v) != nil })
	return ls
}

// FileLabels returns the Loki labels for one file of dir: tenant and
// application of the target (the path rule's application where the target
// has none), the version in the file's name if any, else the target's or
// the path's; and stream="file".
func (r *FileRules) FileLabels(t Target, dir LogDir, name string) map[string]string {
	ls := t.StreamLabels()
	for _, k := range []string{labels.Application, labels.Version} {
		if _, ok := ls[k]; !ok && dir.Labels[k] != "" {
			ls[k] = dir.Labels[k]
		}
	}
	if v := groups(r.NameRegex, name, labels.Version)[labels.Version]; v != "" && labels.ValidValue(v) == nil {
		ls[labels.Version] = v
	}
	ls[labels.Stream] = "file"
	return ls
}

// groups returns the named groups of re in s that are among names.
func groups(re *regexp.Regexp, s string, names ...string) map[string]string {
	out := map[string]string{}
	if re == nil {
		return out
	}
	m := re.FindStringSubmatch(s)
	if m == nil {
		return out
	}
	for i, n := range re.SubexpNames() {
		for _, want := range names {
			if n == want && m[i] != "" {
				out[n] = m[i]
			}
		}
	}
	return out
}
