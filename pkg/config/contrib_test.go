package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// What the operator-facing files say about podtail's defaults is what the
// defaults are: a "<value> by default" after a configuration key in contrib/,
// the README, docs/ or the shipped config names that key's default, and no
// alert or dashboard compares the queue with a number of its own (it
// compares with podtail_loki_queue_limit_bytes). PodtailLagging once fired
// at 8 MiB of a 6 MiB bound, which it cannot reach.
func TestContribMatchesDefaults(t *testing.T) {
	defaults := map[string]any{}
	var keys []string
	for _, s := range Default().Settings() {
		defaults[s.Key] = s.Value
		keys = append(keys, regexp.QuoteMeta(s.Key))
	}
	keyRe := regexp.MustCompile(`(?:^|[^a-z_.])(` + strings.Join(keys, "|") + `)(?:[^a-z_.]|$)`)
	byDefault := regexp.MustCompile(`([0-9][0-9A-Za-z.]*)\s+by default`)
	constQueue := regexp.MustCompile(`podtail_loki_queued_bytes[^"\n]*?[<>]=?\s*[0-9][0-9.]*(?:\s*\*\s*[0-9][0-9.]*)*\s*(?:["\n)#]|$|and\b|or\b|unless\b)`)
	checked := 0
	for _, root := range []string{"../../contrib", "../../docs", "../../config", "../../README.md"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			text := string(b)
			for _, m := range constQueue.FindAllString(text, -1) {
				t.Errorf("%s: %q compares the queue with a number; compare with podtail_loki_queue_limit_bytes", path, m)
			}
			for _, m := range byDefault.FindAllStringSubmatchIndex(text, -1) {
				value := text[m[2]:m[3]]
				before := text[max(0, m[0]-120):m[0]]
				ks := keyRe.FindAllStringSubmatch(before, -1)
				if len(ks) == 0 {
					continue // not about a configuration key
				}
				key := ks[len(ks)-1][1]
				checked++
				if !sameValue(defaults[key], value) {
					t.Errorf("%s: says %s is %s by default; it is %v", path, key, value, defaults[key])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked == 0 {
		t.Fatal("no default stated anywhere was checked: the patterns no longer match the files")
	}
}

// sameValue reports whether text states the default v: a duration, a size
// or the value as printed.
func sameValue(v any, text string) bool {
	switch x := v.(type) {
	case string:
		if d, err := time.ParseDuration(x); err == nil {
			t, err := time.ParseDuration(text)
			return err == nil && t == d
		}
		return x == text
	case int64: // a ByteSize
		var b ByteSize
		return b.UnmarshalText([]byte(text)) == nil && int64(b) == x
	}
	return false
}
