package discovery_test

import (
	"context"
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

func seedRules(t *testing.T) *discovery.FileRules {
	t.Helper()
	r, err := discovery.NewFileRules([]string{labels.DefaultMountSuffix}, labels.DefaultPathRegex, labels.DefaultNameRegex)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Only bind mounts whose source or destination ends in workplace/logs (whole
// components) are log directories; host_prefix is joined to the source; the
// path rule's labels come along.
func TestFileRulesDirs(t *testing.T) {
	r := seedRules(t)
	dirs := r.Dirs([]podman.Mount{
		{Type: "bind", Source: "/srv/namespace/beiluo/test777/workplace/logs", Destination: "/app/logs"},
		{Type: "bind", Source: "/data/x", Destination: "/app/workplace/logs/"},
		{Type: "bind", Source: "/data/notworkplace/logs", Destination: "/y"},
		{Type: "volume", Source: "/var/lib/containers/storage/volumes/v/_data", Destination: "/app/workplace/logs"},
	}, "/host")
	if len(dirs) != 2 {
		t.Fatalf("dirs: %+v", dirs)
	}
	if dirs[0].Path != "/host/srv/namespace/beiluo/test777/workplace/logs" || dirs[0].Labels["application"] != "test777" || dirs[0].Labels["tenant"] != "beiluo" {
		t.Errorf("first: %+v", dirs[0])
	}
	if dirs[1].Path != "/host/data/x" || len(dirs[1].Labels) != 0 {
		t.Errorf("second: %+v", dirs[1])
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

func TestFileRulesBadRegex(t *testing.T) {
	if _, err := discovery.NewFileRules(nil, "(", ""); err == nil || !strings.Contains(err.Error(), "files.path_regex") {
		t.Errorf("err = %v", err)
	}
	if _, err := discovery.NewFileRules(nil, "", "(?P<x"); err == nil || !strings.Contains(err.Error(), "files.name_regex") {
		t.Errorf("err = %v", err)
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
	s := discovery.NewStatic([]discovery.StaticDir{{Glob: filepath.Join(root, "namespace", "*", "*", "workplace", "logs")}},
		seedRules(t), 20*time.Millisecond, zap.NewNop())
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
