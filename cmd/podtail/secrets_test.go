package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// configCheck runs `podtail config check --config file` and returns what it
// printed and its error.
func configCheck(t *testing.T, yaml string) (string, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "podtail.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"config", "check", "--config", file})
	err := root.Execute()
	return out.String(), err
}

// Passwords, tokens and header values never appear in `podtail config check`,
// whether they come from the file or the environment, and whether the
// configuration is valid or not; the keys still show that they are set.
func TestConfigCheckMasksSecrets(t *testing.T) {
	const (
		password = "pw-Sup3rSecret"
		token    = "tok-Sup3rSecret"
		apiKey   = "key-Sup3rSecret"
	)
	secrets := []string{password, token, apiKey}
	noSecret := func(t *testing.T, s string) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				t.Errorf("output shows secret %q:\n%s", sec, s)
			}
		}
	}

	t.Run("basic auth from file, header", func(t *testing.T) {
		out, err := configCheck(t, `
loki:
  url: https://loki.example:3100
  basic_auth:
    username: podtail
    password: `+password+`
  headers:
    X-Gateway-Key: `+apiKey+`
`)
		if err != nil {
			t.Fatalf("config check: %v\n%s", err, out)
		}
		noSecret(t, out)
		for _, want := range []string{
			"    username: podtail",
			"    password: <redacted>",
			"x-gateway-key: <redacted>",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("bearer token from env", func(t *testing.T) {
		t.Setenv("PODTAIL_LOKI_BEARER_TOKEN", token)
		out, err := configCheck(t, "loki:\n  url: https://loki.example:3100\n")
		if err != nil {
			t.Fatalf("config check: %v\n%s", err, out)
		}
		noSecret(t, out)
		if !strings.Contains(out, "  bearer_token: <redacted>") {
			t.Errorf("output lacks the masked token:\n%s", out)
		}
	})

	t.Run("invalid configuration", func(t *testing.T) {
		t.Setenv("PODTAIL_LOKI_BEARER_TOKEN", token)
		out, err := configCheck(t, `
loki:
  url: http://user:`+password+`@loki.example:3100
  basic_auth:
    password: `+password+`
  headers:
    X-Scope-OrgID: `+apiKey+`
    X-Bad: "a`+"\\n"+apiKey+`"
`)
		if err == nil {
			t.Fatalf("config check accepted it:\n%s", out)
		}
		noSecret(t, out)
		noSecret(t, err.Error())
		for _, want := range []string{"loki.url", "loki.basic_auth.username", "loki.bearer_token", "x-scope-orgid", "loki.headers.x-bad"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not name %s: %v", want, err)
			}
		}
	})

	t.Run("insecure_skip_verify is flagged", func(t *testing.T) {
		out, err := configCheck(t, "loki:\n  url: https://loki.example:3100\n  tls:\n    insecure_skip_verify: true\n")
		if err != nil {
			t.Fatalf("config check: %v\n%s", err, out)
		}
		if !strings.Contains(out, "WARNING: loki.tls.insecure_skip_verify") {
			t.Errorf("no warning:\n%s", out)
		}
	})
}

// What config check prints is YAML that podtail reads back to the same
// configuration: an operator can keep it as the file.
func TestConfigCheckPrintsLoadableYAML(t *testing.T) {
	in := `
loki:
  url: http://loki.example:3100
  queue_bytes: 12MiB
  batch_wait: 250ms
static_labels: {cluster: prod}
discovery:
  select:
    - {action: drop, source: name, regex: "podtail.*"}
pipeline:
  apps:
    - match: {application: shop}
      container: []
      files:
        - type: zap
        - {type: drop, level: [info], drop_ratio: 0.9}
`
	out, err := configCheck(t, in)
	if err != nil {
		t.Fatalf("config check: %v\n%s", err, out)
	}
	again, err := configCheck(t, out)
	if err != nil {
		t.Fatalf("config check of its own output: %v\n%s", err, out)
	}
	if again != out {
		t.Errorf("printed configuration read back prints differently:\n%s\n---\n%s", out, again)
	}
	for _, want := range []string{"queue_bytes: 12MiB", "batch_wait: 250ms", "cluster: prod", "container: []", "regex: podtail.*"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
