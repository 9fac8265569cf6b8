package discovery_test

import (
	"path/filepath"
	"testing"

	"github.com/podtail/podtail/pkg/discovery"
)

// Rotated copies, by logrotate (numbered, dateext in its default, hourly
// and %s forms, compressed or not) and by lumberjack, name their live file;
// other names are their own live file, and a name that only looks like a
// suffix (a version, a word, a date that is not one) is left whole.
func TestRotatedBase(t *testing.T) {
	for _, tc := range []struct {
		name, base string
		gz         bool
	}{
		{"app.log", "app.log", false},
		{"app.log.1", "app.log", false},
		{"app.log.12", "app.log", false},
		{"app.log.2.gz", "app.log", true},
		{"app.log.gz", "app.log", true},
		{"app.log-20261206", "app.log", false},
		{"app.log-20261206.gz", "app.log", true},
		{"app.log-2026120613", "app.log", false},          // hourly: -%Y%m%d%H
		{"app.log-20261206-1796546611", "app.log", false}, // -%Y%m%d-%s
		{"app.log-20261206-1796546611.gz", "app.log", true},
		{"app.log-2026-12-06", "app.log", false}, // -%Y-%m-%d
		{"app.log_20261206", "app.log", false},
		{"app.log-1796546611", "app.log", false}, // -%s
		{"u_app_v1-2026-11-25T01-02-03.000.log", "u_app_v1.log", false},
		{"u_app_v1-2026-11-25T01-02-03.000.log.gz", "u_app_v1.log", true},
		{"noext-2026-11-25T01-02-03.000", "noext", false},
		{"app.log.1.1", "app.log.1", false}, // one suffix at a time
		{"app.log-v2", "app.log-v2", false},
		{"app.log-final", "app.log-final", false},
		{"app.log-20261306", "app.log-20261306", false}, // month 13: not a date
		{"app.log-123", "app.log-123", false},
		{"app-2026-12-06.log", "app-2026-12-06.log", false}, // a date inside the live name
		{"u_app_v15.log", "u_app_v15.log", false},
		{".gz", ".gz", false},
		{".1", ".1", false},
		{"", "", false},
	} {
		base, gz := discovery.RotatedBase(tc.name)
		if base != tc.base || gz != tc.gz {
			t.Errorf("RotatedBase(%q) = %q, %v; want %q, %v", tc.name, base, gz, tc.base, tc.gz)
		}
	}
}

// A file is read when it or its live file matches an include glob and
// neither matches an exclude glob.
func TestFileRulesReads(t *testing.T) {
	cfg := seedConfig()
	cfg.Include = []string{"*.log", "access_log"}
	cfg.Exclude = []string{"debug.log", "*.tmp.log", "*-2025*"}
	r, err := discovery.NewFileRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"app.log":                               true,
		"app.log.1":                             true,
		"app.log.2.gz":                          true,
		"app.log-20261206":                      true,
		"app.log-20261206.gz":                   true,
		"app.log.gz":                            true,
		"u_a_v1-2026-11-25T01-02-03.000.log.gz": true,
		"access_log":                            true, // an include that is not *.log
		"access_log.1":                          true,
		"access_log-20261206.gz":                true,
		"debug.log":                             false, // excluded...
		"debug.log.1":                           false, // ...with its copies
		"debug.log-20261206.gz":                 false,
		"x.tmp.log":                             false,
		"app.log-20250101":                      false, // the copy itself excluded
		"app.txt":                               false,
		"app.txt.1":                             false,
		"app.log.bak":                           false,
		"app.log.swp":                           false,
		"notes":                                 false,
	} {
		if got := r.Reads(name); got != want {
			t.Errorf("Reads(%q) = %v, want %v", name, got, want)
		}
	}

	// The default include reads live files and every form of copy, and
	// nothing else.
	def := seedRules(t)
	for name, want := range map[string]bool{"a.log": true, "a.log.3": true, "a.log-20261206.gz": true, "a.json": false, "a.json.1": false} {
		if got := def.Reads(name); got != want {
			t.Errorf("default: Reads(%q) = %v, want %v", name, got, want)
		}
	}
}

// A rotated copy is labelled as its live file: the version in the live
// file's name, whatever rotation added.
func TestFileLabelsRotated(t *testing.T) {
	r := seedRules(t)
	target := discovery.Target{Tenant: "acme", App: "shop", Version: "v9"}
	for _, name := range []string{
		"u_app_v1.log", "u_app_v1.log.1", "u_app_v1.log.2.gz", "u_app_v1.log-20261206", "u_app_v1.log-20261206.gz",
		"u_app_v1.log-2026120613", "u_app_v1-2026-11-25T01-02-03.000.log.gz",
	} {
		if v := r.FileLabels(target, discovery.LogDir{}, name)["version"]; v != "v1" {
			t.Errorf("%s: version %q, want v1 (the live file's)", name, v)
		}
	}
	if v := r.FileLabels(target, discovery.LogDir{}, "plain.log.1")["version"]; v != "v9" {
		t.Errorf("plain.log.1: version %q, want the target's v9", v)
	}
}

// ValidGlob agrees with filepath.Match on every name, where Match alone
// would pass "x*[" when the name does not reach the class.
func TestValidGlob(t *testing.T) {
	for _, g := range []string{"*.log", "access_log", "app-?.log", "[abc]*.log", "[^.]*", "[a-z0-9]*", `\*.log`, `[\]]`, "[]-]"[1:], "é[é-ü]"} {
		if !discovery.ValidGlob(g) {
			t.Errorf("ValidGlob(%q) = false", g)
		}
	}
	for _, g := range []string{"x*[", "ab*[a-", "[", "[]", "[]a]", "[a-]", "[-a]", "[^]", `x\`, `[\`, "[a-z", "[\xff]", "*.log["} {
		if discovery.ValidGlob(g) {
			t.Errorf("ValidGlob(%q) = true", g)
		}
		bad := false
		for _, n := range []string{"", "x", "xa", "ab", "abc", "a", "é"} {
			if _, err := filepath.Match(g, n); err != nil {
				bad = true
			}
		}
		if !bad {
			t.Errorf("%q: Match never refused it; the table is wrong", g)
		}
	}
}
