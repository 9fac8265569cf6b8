package discovery_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/podman"
)

// seedConfig is the files.* defaults of the seed's layout.
func seedConfig() discovery.FileRulesConfig {
	return discovery.FileRulesConfig{
		MountSuffixes: []string{labels.DefaultMountSuffix}, MountTypes: []string{"bind", "volume"},
		Include: []string{"*.log"}, PathRegex: labels.DefaultPathRegex, NameRegex: labels.DefaultNameRegex,
	}
}

func seedRules(t *testing.T) *discovery.FileRules {
	t.Helper()
	r, err := discovery.NewFileRules(seedConfig())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Mounts of the configured types whose source or destination ends in
// workplace/logs (whole components) are log directories: a named volume at
// its host directory, as a bind mount; host_prefix is joined to the source;
// the path rule's labels come along. Other mount types, and a volume with
// no host directory, are not.
func TestFileRulesDirs(t *testing.T) {
	mounts := []podman.Mount{
		{Type: "bind", Source: "/srv/namespace/beiluo/test777/workplace/logs", Destination: "/app/logs"},
		{Type: "bind", Source: "/data/x", Destination: "/app/workplace/logs/"},
		{Type: "bind", Source: "/data/notworkplace/logs", Destination: "/y"},
		{Type: "volume", Name: "v", Source: "/var/lib/containers/storage/volumes/v/_data", Destination: "/app/workplace/logs"},
		{Type: "volume", Name: "plugin", Source: "", Destination: "/b/workplace/logs"},
		{Type: "tmpfs", Source: "tmpfs", Destination: "/c/workplace/logs"},
	}
	dirs := seedRules(t).Dirs(mounts, "/host")
	if len(dirs) != 3 {
		t.Fatalf("dirs: %+v", dirs)
	}
	if dirs[0].Path != "/host/srv/namespace/beiluo/test777/workplace/logs" || dirs[0].Labels["application"] != "test777" || dirs[0].Labels["tenant"] != "beiluo" {
		t.Errorf("first: %+v", dirs[0])
	}
	if dirs[1].Path != "/host/data/x" || len(dirs[1].Labels) != 0 || dirs[1].Volume != "" {
		t.Errorf("second: %+v", dirs[1])
	}
	if dirs[2].Path != "/host/var/lib/containers/storage/volumes/v/_data" || dirs[2].Volume != "v" {
		t.Errorf("volume: %+v", dirs[2])
	}
	tg := discovery.Target{LogDirs: dirs[2:]}
	if got := tg.Sources(); len(got) != 1 || got[0] != "files /host/var/lib/containers/storage/volumes/v/_data/*.log (volume v)" {
		t.Errorf("Sources = %q", got)
	}

	cfg := seedConfig()
	cfg.MountTypes = []string{"bind"}
	bindOnly, err := discovery.NewFileRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if dirs := bindOnly.Dirs(mounts, ""); len(dirs) != 2 || dirs[1].Path != "/data/x" {
		t.Errorf("mount_types [bind]: %+v, want the two bind mounts", dirs)
	}
}

// A version in a file's name wins over the container's, for live files and
// lumberjack backups alike; the container's tenant is never replaced by the
// path's; the path's application fills in when the container has none.
func TestFileLabels(t *testing.T) {
	r := seedRules(t)
	target := discovery.Target{Tenant: "acme", Version: "v14"}
	dir := discovery.LogDir{Labels: map[string]string{"tenant": "evil", "application": "test777"}}
	for name, version := range map[string]string{
		"beiluo_test777_v15.log":                            "v15",
		"beiluo_test777_v15-2026-11-25T01-02-03.000.log":    "v15",
		"beiluo_test777_v15-2026-11-25T01-02-03.000.log.gz": "v15",
		"my_app_with_underscores_v2.log":                    "v2",
		"other.log":                                         "v14",
		"beiluo_test777_vX.log":                             "v14",
	} {
		ls := r.FileLabels(target, dir, name)
		if ls["version"] != version || ls["tenant"] != "acme" || ls["application"] != "test777" || ls["stream"] != "file" {
			t.Errorf("%s: %v, want version %s", name, ls, version)
		}
	}
}

// A bad rule is refused, naming its key and the value.
func TestFileRulesBad(t *testing.T) {
	for _, tc := range []struct {
		edit func(*discovery.FileRulesConfig)
		want []string
	}{
		{func(c *discovery.FileRulesConfig) { c.PathRegex = "(" }, []string{"files.path_regex"}},
		{func(c *discovery.FileRulesConfig) { c.NameRegex = "(?P<x" }, []string{"files.name_regex"}},
		{func(c *discovery.FileRulesConfig) { c.MountTypes = []string{"bind", "tmpfs"} }, []string{"files.mount_types", `"tmpfs"`}},
		{func(c *discovery.FileRulesConfig) { c.Include = []string{"*.log", "[a-"} }, []string{"files.include", `"[a-"`}},
		{func(c *discovery.FileRulesConfig) { c.Exclude = []string{"sub/*.log"} }, []string{"files.exclude", `"sub/*.log"`}},
		{func(c *discovery.FileRulesConfig) { c.Exclude = []string{"a[\\"} }, []string{"files.exclude"}},
	} {
		cfg := seedConfig()
		tc.edit(&cfg)
		_, err := discovery.NewFileRules(cfg)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: err = %v, want it to name %s", cfg, err, w)
			}
		}
	}
}

// Static directories: found by glob, tenant from the path rule or the
// config, an invalid tenant skipped, directories made later found on rescan.
func TestStaticDiscovery(t *testing.T) {
	root := t.TempDir()
	mk := func(parts ...string) string {
		d := filepath.Join(append([]string{root, "namespace"}, parts...)...)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := mk("beiluo", "test777", "workplace", "logs")
	mk("bad|tenant", "x", "workplace", "logs")
	shared := discovery.Shared{StaticLabels: map[string]string{"cluster": "prod"}, Metadata: []string{"container", "image", "pod", "host"}, Host: "web-1"}
	s := discovery.NewStatic([]discovery.StaticDir{{Glob: filepath.Join(root, "namespace", "*", "*", "workplace", "logs")}},
		seedRules(t), shared, 20*time.Millisecond, zap.NewNop())
	up := make(chan []discovery.Target, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { _ = s.Run(ctx, up); close(done) }()
	defer func() { cancel(); <-done }()

	set := <-up
	if len(set) != 1 || set[0].Tenant != "beiluo" || set[0].App != "test777" || set[0].LogDirs[0].Path != a || set[0].LogPath != "" || !set[0].Running {
		t.Fatalf("first set: %+v", set)
	}
	// A static directory has no container, image or pod; it has a host,
	// and the static labels.
	if md := set[0].Metadata; len(md) != 1 || md["host"] != "web-1" {
		t.Errorf("Metadata = %v, want only host", md)
	}
	if ls := set[0].StreamLabels(); ls["cluster"] != "prod" || ls["tenant"] != "beiluo" {
		t.Errorf("StreamLabels = %v, want the static label beside the tenant", ls)
	}
	b := mk("acme", "shop", "workplace", "logs")
	select {
	case set = <-up:
	case <-time.After(5 * time.Second):
		t.Fatal("a new directory was not found on rescan")
	}
	if len(set) != 2 || set[0].LogDirs[0].Path != b || set[0].Tenant != "acme" {
		t.Fatalf("second set: %+v", set)
	}
}

// A static glob that matches through a symlink (a tenant linking its own
// path to another tenant's directory, whose tenant the path rule would then
// give) is not published.
func TestStaticDiscoverySkipsSymlinks(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "namespace", "beiluo", "test777", "workplace", "logs")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "namespace", "evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "namespace", "beiluo", "test777"), filepath.Join(root, "namespace", "evil", "stolen")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "namespace", "evil", "own", "workplace"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(root, "namespace", "evil", "own", "workplace", "logs")); err != nil {
		t.Fatal(err)
	}
	s := discovery.NewStatic([]discovery.StaticDir{{Glob: filepath.Join(root, "namespace", "*", "*", "workplace", "logs")}},
		seedRules(t), discovery.Shared{}, time.Hour, zap.NewNop())
	up := make(chan []discovery.Target, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx, up); close(done) }()
	set := <-up
	cancel()
	<-done
	if len(set) != 1 || set[0].Tenant != "beiluo" || set[0].LogDirs[0].Path != real {
		t.Fatalf("published %+v; want only beiluo's real directory", set)
	}
}

// The path rules, fuzzed: whatever a mount's paths and a file's name are
// (a tenant chooses its files' names), a mount is a log directory exactly
// when it has a host path and a path ends in the suffix, its path is the
// source under host_prefix,
// and a file's labels are the target's tenant (never the path's), stream
// "file", and bounded values of valid UTF-8 for application and version.
func FuzzFileRules(f *testing.F) {
	f.Add("/srv/namespace/beiluo/test777/workplace/logs", "/app/workplace/logs", "beiluo_test777_v15.log", "app", "")
	f.Add("/data/x/../workplace/logs/", "/y", "u_a_v1-2026-11-25T01-02-03.000.log.gz", "", "v2")
	f.Add("relative/workplace/logs", "", "a_b_v\xff.log", "", "")
	f.Add("/srv/namespace/x\n/y/workplace/logs", "/workplace/logs", "_\x00_v1.log", "é", "v1")
	f.Fuzz(func(t *testing.T, source, dest, name, app, version string) {
		r, err := discovery.NewFileRules(seedConfig())
		if err != nil {
			t.Fatal(err)
		}
		dirs := r.Dirs([]podman.Mount{{Type: "bind", Source: source, Destination: dest}}, "/host")
		ends := func(p string) bool {
			p = strings.Trim(filepath.Clean("/"+p), "/")
			return p == labels.DefaultMountSuffix || strings.HasSuffix(p, "/"+labels.DefaultMountSuffix)
		}
		// A mount without a host path has nothing to read (Dirs skips it).
		if want := source != "" && (ends(source) || ends(dest)); (len(dirs) == 1) != want {
			t.Fatalf("mount %q -> %q: %d dirs, want a log directory: %v", source, dest, len(dirs), want)
		}
		// A pattern Match finds malformed, for any name, is not a ValidGlob.
		for _, n := range []string{source, dest, app, version, ""} {
			if _, err := filepath.Match(name, n); err != nil && discovery.ValidGlob(name) {
				t.Fatalf("ValidGlob(%q) but Match(%q, %q): %v", name, name, n, err)
			}
		}
		// A rotated copy's live file is a shorter name, gz says .gz, and the
		// copy is read and labelled as the live file is.
		base, gz := discovery.RotatedBase(name)
		if len(base) > len(name) || (name != "" && base == "") || gz != (strings.HasSuffix(name, ".gz") && name != ".gz") {
			t.Fatalf("RotatedBase(%q) = %q, %v", name, base, gz)
		}
		if r.Reads(name) && !strings.HasSuffix(name, ".log") && !strings.HasSuffix(base, ".log") {
			t.Fatalf("Reads(%q) with include *.log, live file %q", name, base)
		}
		target := discovery.Target{Tenant: "acme", App: app, Version: version}
		if a, b := r.FileLabels(target, discovery.LogDir{}, name), r.FileLabels(target, discovery.LogDir{}, base); !maps.Equal(a, b) {
			t.Fatalf("%q labelled %v, its live file %q %v", name, a, base, b)
		}
		for _, d := range dirs {
			if d.Path != filepath.Join("/host", source) {
				t.Fatalf("path %q for source %q", d.Path, source)
			}
			ls := r.FileLabels(target, d, name)
			if ls["tenant"] != "acme" || ls["stream"] != "file" {
				t.Fatalf("labels %v: tenant or stream not the target's", ls)
			}
			for k, v := range ls {
				switch k {
				case "tenant", "stream", "application", "version":
				default:
					t.Fatalf("unexpected label %s=%q", k, v)
				}
				if k == "application" && app == "" && v != d.Labels["application"] {
					t.Fatalf("application %q not the path's %q", v, d.Labels["application"])
				}
				if (k == "version" || k == "application") && v != version && v != app && labels.ValidValue(v) != nil {
					t.Fatalf("%s=%q from a path or name is not a valid label value: %v", k, v, labels.ValidValue(v))
				}
			}
		}
	})
}

// A component of a published directory's path replaced by a symlink is
// seen at the next rescan, though the other directories under the same
// parent were checked before it (what a scan learns of the path's
// components is kept for that scan only).
func TestStaticRescanSeesNewSymlink(t *testing.T) {
	root := t.TempDir()
	ns := filepath.Join(root, "namespace")
	for _, u := range []string{"alpha", "beta"} {
		if err := os.MkdirAll(filepath.Join(ns, u, "app", "workplace", "logs"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := discovery.NewStatic([]discovery.StaticDir{{Glob: filepath.Join(ns, "*", "*", "workplace", "logs")}},
		seedRules(t), discovery.Shared{}, 10*time.Millisecond, zap.NewNop())
	up := make(chan []discovery.Target, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx, up); close(done) }()
	defer func() { cancel(); <-done }()
	if set := <-up; len(set) != 2 {
		t.Fatalf("first scan published %d directories, want 2: %+v", len(set), set)
	}
	// beta's app becomes a link to alpha's: the path rule would give it beta's tenant.
	if err := os.RemoveAll(filepath.Join(ns, "beta", "app")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(ns, "alpha", "app"), filepath.Join(ns, "beta", "app")); err != nil {
		t.Fatal(err)
	}
	select {
	case set := <-up:
		if len(set) != 1 || set[0].Tenant != "alpha" {
			t.Fatalf("after the symlink: %+v; want only alpha's directory", set)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no rescan published the change")
	}
}
