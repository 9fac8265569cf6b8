package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podtail/podtail/pkg/loki"
	"go.yaml.in/yaml/v3"
)

// loki.tenant_auth loads with each tenant's case kept, reaches pkg/loki
// unmasked, prints masked, and a bad entry is refused naming its key.
func TestLokiTenantAuth(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "acme.pw")
	if err := os.WriteFile(pw, []byte("acme-Sup3rSecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(entries string) (*Config, error) {
		file := filepath.Join(dir, "podtail.yaml")
		if err := os.WriteFile(file, []byte("loki:\n  tenant_auth:\n"+entries), 0o600); err != nil {
			t.Fatal(err)
		}
		return Load(file, nil)
	}
	c, err := load(`    - tenant: AcMe
      basic_auth: {username: agent-acme, password_file: ` + pw + `}
    - tenant: beiluo
      bearer_token: beiluo-Sup3rSecret
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []loki.TenantAuth{
		{Tenant: "AcMe", BasicAuth: loki.BasicAuth{Username: "agent-acme", PasswordFile: pw}},
		{Tenant: "beiluo", BearerToken: "beiluo-Sup3rSecret"},
	}
	got := c.Loki.Security().TenantAuth
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("pkg/loki gets %+v, want %+v", got, want)
	}
	out, err := yaml.Marshal(c.Tree())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "Sup3rSecret") || !strings.Contains(string(out), "bearer_token: <redacted>") ||
		!strings.Contains(string(out), "tenant: AcMe") {
		t.Errorf("config check would print:\n%s", out)
	}

	for entries, wants := range map[string][]string{
		"    - tenant: acme\n      basic_auth: {username: u, pasword: x}\n": {"pasword"},
		"    - tenant: 'a b'\n      bearer_token: x\n":                      {`loki.tenant_auth[0].tenant: tenant "a b" has ' '`},
		"    - tenant: acme\n": {`loki.tenant_auth[0]: set basic_auth, bearer_token or bearer_token_file for tenant "acme"`},
		"    - tenant: acme\n      bearer_token_file: /nonexistent/t\n": {"loki.tenant_auth[0].bearer_token_file: open /nonexistent/t"},
		"    - bearer_token: x\n": {"loki.tenant_auth[0].tenant: must be set"},
	} {
		_, err := load(entries)
		for _, w := range wants {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %v, want %q", entries, err, w)
			}
		}
	}
}
