package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "podtail.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Precedence is defaults < file < env < flags, and every key reads from env.
func TestLoadPrecedence(t *testing.T) {
	p := writeFile(t, "loki:\n  url: http://file:3100\n  batch_size: 2MiB\n  batch_wait: 250ms\ndata_dir: /from/file\n")
	t.Setenv("PODTAIL_DATA_DIR", "/from/env")
	t.Setenv("PODTAIL_SERVER_LISTEN", "127.0.0.1:9999")
	t.Setenv("PODTAIL_DISCOVERY_REQUIRE_TENANT", "false")
	t.Setenv("PODTAIL_DISCOVERY_DEFAULT_TENANT", "fallback")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("loki.url", "", "")
	if err := fs.Parse([]string{"--loki.url=http://flag:3100"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.Loki.URL != "http://flag:3100" {
		t.Errorf("loki.url = %q, want the flag's", c.Loki.URL)
	}
	if c.DataDir != "/from/env" || c.Server.Listen != "127.0.0.1:9999" {
		t.Errorf("env not applied: data_dir=%q listen=%q", c.DataDir, c.Server.Listen)
	}
	if c.Discovery.RequireTenant || c.Discovery.DefaultTenant != "fallback" {
		t.Errorf("bool/env: require_tenant=%v default=%q", c.Discovery.RequireTenant, c.Discovery.DefaultTenant)
	}
	if c.Loki.BatchSize != 2<<20 || c.Loki.BatchWait != 250*time.Millisecond {
		t.Errorf("file values: batch_size=%d batch_wait=%s", c.Loki.BatchSize, c.Loki.BatchWait)
	}
	if c.Loki.Timeout != 10*time.Second {
		t.Errorf("default lost: timeout=%s", c.Loki.Timeout)
	}
}

// A list key from the environment is split at commas.
func TestLoadListFromEnv(t *testing.T) {
	t.Setenv("PODTAIL_LIMITS_TENANTS", "acme,beiluo")
	t.Setenv("PODTAIL_FILES_MOUNT_SUFFIXES", "workplace/logs,var/log/app")
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Limits.Tenants; len(got) != 2 || got[0] != "acme" || got[1] != "beiluo" {
		t.Errorf("limits.tenants = %q", got)
	}
	if got := c.Files.MountSuffixes; len(got) != 2 || got[1] != "var/log/app" {
		t.Errorf("files.mount_suffixes = %q", got)
	}
}

// A bad file names each bad key, and a typo gets a suggestion.
func TestLoadErrorsNameTheKey(t *testing.T) {
	cases := map[string][]string{
		"loki:\n  ulr: http://x\n":                     {"loki.ulr: unknown key", "did you mean loki.url"},
		"loki:\n  batch_wait: soon\n":                  {"loki.batch_wait", "soon"},
		"loki:\n  batch_size: lots\n":                  {"loki.batch_size", "not a size"},
		"loki:\n  url: ftp://x\nlog:\n  level: loud\n": {"loki.url", "log.level", `"loud"`},
		"discovery:\n  existing_from: middle\n":        {"discovery.existing_from"},
		"podman:\n  socket: /run/podman.sock\n":        {"podman.socket", "unix:///"},
		"loki: [1, 2\n":                                {"config file"},
	}
	for body, wants := range cases {
		_, err := Load(writeFile(t, body), nil)
		if err == nil {
			t.Errorf("%q: no error", body)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q lacks %q", body, err, w)
			}
		}
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/podtail.yaml", nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/podtail.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestKeysCoverContract(t *testing.T) {
	keys := strings.Join(Keys(), " ")
	for _, k := range []string{"podman.socket", "loki.url", "data_dir", "server.listen"} {
		if !strings.Contains(keys, k) {
			t.Errorf("key %s missing from %s", k, keys)
		}
	}
}

// static_labels take names of the user's choosing from a file (as
// loki.headers do), and a glob that would panic at start is refused.
func TestStaticLabelsAndGlobsFromFile(t *testing.T) {
	load := func(yaml string) (*Config, error) {
		path := filepath.Join(t.TempDir(), "podtail.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return Load(path, nil)
	}
	c, err := load("static_labels: {cluster: test, host: web-1}\n")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.StaticLabels["cluster"] != "test" || c.StaticLabels["host"] != "web-1" {
		t.Errorf("static_labels = %v", c.StaticLabels)
	}
	_, err = load("files:\n  include: [\"x*[\"]\n")
	if err == nil || !strings.Contains(err.Error(), `files.include: "x*["`) {
		t.Errorf("Load = %v, want files.include's bad glob named", err)
	}
}

// A misspelt key inside a pipeline.apps entry is an error naming it, not
// silently ignored.
func TestAppsUnknownKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podtail.yaml")
	yaml := "pipeline:\n  apps:\n    - match: {application: shop}\n      fils: [{type: zap}]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), "fils") {
		t.Fatalf("Load = %v, want an error naming fils", err)
	}
	t.Log(err)
}
