package discovery

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/labels"
)

// StaticDir is a Promtail-style file target for apps that do not run in
// containers: a glob of directories and the rules that label them.
type StaticDir struct {
	// Glob matches directories, e.g. /srv/namespace/*/*/workplace/logs.
	Glob string
	// Tenant, when set, is every matched directory's tenant; otherwise the
	// tenant comes from the path rule's tenant group.
	Tenant string
}

// Static publishes the targets of static directories, rescanning the globs
// so directories created later are found without a restart.
type Static struct {
	dirs   []StaticDir
	rules  *FileRules
	shared Shared
	every  time.Duration
	log    *zap.Logger
	warn   map[string]bool
}

// NewStatic returns a static discoverer. Its targets carry shared's static
// labels and, of the source metadata, the host: they have no container,
// image or pod.
func NewStatic(dirs []StaticDir, rules *FileRules, shared Shared, every time.Duration, log *zap.Logger) *Static {
	return &Static{dirs: dirs, rules: rules, shared: shared, every: every, log: log, warn: map[string]bool{}}
}

// Run publishes the full set now and whenever it changes, until ctx ends.
func (s *Static) Run(ctx context.Context, up chan []Target) error {
	var last []Target
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		set := s.scan()
		if !sameTargets(set, last) {
			last = set
			replace(up, set)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Static) scan() []Target {
	seen := map[string]bool{}
	plain := map[string]bool{} // components found not to be symlinks, this scan
	var out []Target
	for _, sd := range s.dirs {
		matches, err := filepath.Glob(sd.Glob)
		if err != nil {
			s.once(sd.Glob, "bad glob", zap.Error(err))
			continue
		}
		for _, dir := range matches {
			if seen[dir] {
				continue
			}
			seen[dir] = true
			if link := symlinkIn(dir, plain); link != "" {
				// The glob follows symlinks; the tenant would come from a path
				// that leads somewhere else (another tenant's directory).
				s.once(dir, "static directory not collected: its path goes through a symlink, which podtail does not follow", zap.String("symlink", link))
				continue
			}
			dirLabels := s.rules.pathLabels(dir)
			tenant := sd.Tenant
			if tenant == "" {
				tenant = dirLabels[labels.Tenant]
			}
			if err := labels.ValidTenant(tenant); err != nil {
				s.once(dir, "static directory not collected: no valid tenant from files.static[].tenant or files.path_regex", zap.Error(err))
				continue
			}
			out = append(out, Target{
				ID: "static:" + dir, Name: dir, Tenant: tenant,
				App: dirLabels[labels.Application], Version: dirLabels[labels.Version], Running: true,
				Static: s.shared.static(), Metadata: s.shared.metadata("", "", ""),
				LogDirs: []LogDir{{Path: dir, Source: dir, Labels: dirLabels, globs: s.rules.Include}},
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// symlinkIn returns the first component of path, from the root, that is a
// symlink, or "". The tailer checks again when it opens the directory (this
// is what is published, and said once). plain holds the components already
// found not to be symlinks in this scan, and gets those found now: a glob's
// directories share most of their path (a thousand under
// /srv/namespace/*/*/workplace/logs share /srv/namespace and their user's
// directory), and an lstat of every component of every one was a third of
// the rescan's CPU at rest. It is kept for one scan only, so a component
// replaced by a symlink is seen at the next.
func symlinkIn(path string, plain map[string]bool) string {
	path = filepath.Clean(path)
	var parts []string
	for p := path; p != filepath.Dir(p) && !plain[p]; p = filepath.Dir(p) {
		parts = append(parts, p)
	}
	for i := len(parts) - 1; i >= 0; i-- {
		fi, err := os.Lstat(parts[i])
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return parts[i]
		}
		if err == nil {
			plain[parts[i]] = true
		}
	}
	return ""
}

func (s *Static) once(key, msg string, fields ...zap.Field) {
	if !s.warn[key+msg] {
		s.warn[key+msg] = true
		s.log.Warn(msg, append(fields, zap.String("path", key))...)
	}
}

func sameTargets(a, b []Target) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
