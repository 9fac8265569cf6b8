package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Every key is documented in the README's reference and in the shipped
// default configuration, and that file loads to exactly the defaults.
func TestDocsCoverEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(readme), "| `"+k+"` |") {
			t.Errorf("README.md configuration table lacks %s", k)
		}
	}
	c, err := Load("../../config/podtail.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, want := c.Settings(), Default().Settings()
	for i := range want {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("config/podtail.yaml: %s = %v, default is %v", got[i].Key, got[i].Value, want[i].Value)
		}
	}
}

// The README's configuration for the seed's platform loads and validates:
// users copy it.
func TestReadmeSeedPlatformConfig(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "### The seed's platform, configured per app")
	if i < 0 {
		t.Fatal("README.md lacks the section")
	}
	j := strings.Index(s[i:], "```yaml\n")
	if j < 0 {
		t.Fatal("the section has no yaml block")
	}
	block := s[i+j+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]
	path := t.TempDir() + "/seed.yaml"
	if err := os.WriteFile(path, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, nil)
	if err != nil {
		t.Fatalf("the README's configuration: %v", err)
	}
	if len(c.Pipeline.Apps) != 2 || c.StaticLabels["host"] == "" || len(c.Discovery.Select) != 2 {
		t.Errorf("loaded %d apps, static labels %v, %d select rules", len(c.Pipeline.Apps), c.StaticLabels, len(c.Discovery.Select))
	}
}
