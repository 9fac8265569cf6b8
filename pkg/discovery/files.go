package discovery

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/podman"
)

// FileRules say which directories hold app log files, which files in them
// are read, and what labels their paths and names give.
type FileRules struct {
	// MountSuffixes: a mount whose source or destination ends with one of
	// these (whole path components) is a log directory.
	MountSuffixes []string
	// MountTypes are the kinds of mount looked at: bind, volume.
	MountTypes []string
	// Include and Exclude are globs over file names (filepath.Match): a file
	// is read if it, or the live file it is a rotated copy of, matches an
	// include glob and neither matches an exclude glob.
	Include, Exclude []string
	// PathRegex, matched against a directory's host path, may name groups
	// tenant (static directories only), application and version.
	PathRegex *regexp.Regexp
	// NameRegex, matched against a file name, may name groups application
	// and version; a version in a file's name wins for that file's lines.
	NameRegex *regexp.Regexp
}

// FileRulesConfig is the files.* configuration FileRules are made from.
type FileRulesConfig struct {
	MountSuffixes, MountTypes []string
	Include, Exclude          []string
	PathRegex, NameRegex      string
}

// NewFileRules compiles the rules, naming the key of a bad one.
func NewFileRules(c FileRulesConfig) (*FileRules, error) {
	r := &FileRules{}
	for _, s := range c.MountSuffixes {
		if s = strings.Trim(filepath.Clean("/"+s), "/"); s != "" {
			r.MountSuffixes = append(r.MountSuffixes, s)
		}
	}
	for _, t := range c.MountTypes {
		if t != "bind" && t != "volume" {
			return nil, fmt.Errorf("files.mount_types: %q is not one of bind, volume", t)
		}
		r.MountTypes = append(r.MountTypes, t)
	}
	for key, globs := range map[string][]string{"files.include": c.Include, "files.exclude": c.Exclude} {
		for _, g := range globs {
			if !ValidGlob(g) || strings.Contains(g, "/") {
				return nil, fmt.Errorf("%s: %q is not a glob of file names", key, g)
			}
		}
	}
	r.Include, r.Exclude = slices.Clone(c.Include), slices.Clone(c.Exclude)
	var err error
	if c.PathRegex != "" {
		if r.PathRegex, err = regexp.Compile(c.PathRegex); err != nil {
			return nil, fmt.Errorf("files.path_regex: %w", err)
		}
	}
	if c.NameRegex != "" {
		if r.NameRegex, err = regexp.Compile(c.NameRegex); err != nil {
			return nil, fmt.Errorf("files.name_regex: %w", err)
		}
	}
	return r, nil
}

// Dirs returns the log directories among a container's mounts: those of
// the configured types whose source or destination ends in a mount suffix.
// A named volume is read at its host directory, which Podman reports as its
// source (<graphroot>/volumes/<name>/_data for the local driver); one
// without (a volume plugin's that is not mounted on the host) is left out.
func (r *FileRules) Dirs(mounts []podman.Mount, hostPrefix string) []LogDir {
	var out []LogDir
	for _, m := range mounts {
		if !slices.Contains(r.MountTypes, m.Type) || m.Source == "" || !(r.matches(m.Source) || r.matches(m.Destination)) {
			continue
		}
		d := LogDir{
			Path:   filepath.Join(hostPrefix, m.Source),
			Source: m.Source,
			Labels: r.pathLabels(m.Source),
			globs:  r.Include,
		}
		if m.Type == "volume" {
			d.Volume = m.Name
		}
		out = append(out, d)
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
//
// A rotated copy (app_v1.log.1, app_v1.log-20261206.gz, lumberjack's
// app_v1-2026-12-06T01-02-03.000.log) is labelled as its live file is, by
// the live file's name (RotatedBase): its lines are the same stream's, and
// Loki would otherwise get them under another version, or none.
func (r *FileRules) FileLabels(t Target, dir LogDir, name string) map[string]string {
	ls := t.StreamLabels()
	for _, k := range []string{labels.Application, labels.Version} {
		if _, ok := ls[k]; !ok && dir.Labels[k] != "" {
			ls[k] = dir.Labels[k]
		}
	}
	base, _ := RotatedBase(name)
	if v := groups(r.NameRegex, base, labels.Version)[labels.Version]; v != "" && labels.ValidValue(v) == nil {
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
