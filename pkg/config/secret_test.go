package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A Secret is masked by every printer podtail might hand a configuration to:
// fmt's verbs, JSON, and zap (which podtail logs with).
func TestSecretNeverPrinted(t *testing.T) {
	const pw = "hunter2-Sup3rSecret"
	c := Default()
	c.Loki.BasicAuth = LokiBasicAuth{Username: "u", Password: pw}
	c.Loki.BearerToken = pw
	c.Loki.Headers = map[string]Secret{"X-Key": pw}
	c.Loki.TenantAuth = []LokiTenantAuth{{Tenant: "a", BasicAuth: LokiBasicAuth{Username: "u", Password: pw}}, {Tenant: "b", BearerToken: pw}}

	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outs = append(outs, fmt.Sprintf(verb, c.Loki), fmt.Sprintf(verb, c.Loki.BearerToken))
	}
	j, err := json.Marshal(c.Loki)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j))
	var buf bytes.Buffer
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.DebugLevel))
	log.Info("cfg", zap.Any("loki", c.Loki), zap.Stringer("token", c.Loki.BearerToken))
	outs = append(outs, buf.String())
	for _, kv := range c.Settings() {
		outs = append(outs, fmt.Sprintf("%s: %v", kv.Key, kv.Value))
	}
	for _, o := range outs {
		if strings.Contains(o, pw) || strings.Contains(o, fmt.Sprintf("%x", pw)) {
			t.Errorf("secret shown: %s", o)
		}
	}
	if !strings.Contains(string(j), "redacted") {
		t.Errorf("JSON does not say the secret is set: %s", j)
	}
	if s := Secret("").String(); s != "" {
		t.Errorf("unset secret prints %q, want empty", s)
	}
}

// Header names are the user's to choose, so loki.headers.<anything> is not an
// unknown key; the values reach pkg/loki unmasked.
func TestLokiHeadersAndSecurity(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("t0k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "podtail.yaml")
	yaml := "loki:\n  url: https://loki:3100\n  bearer_token_file: " + tok + "\n  headers:\n    X-Gateway-Key: k3y\n  tls:\n    server_name: loki.internal\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Loki.Security()
	if s.Headers["x-gateway-key"] != "k3y" || s.BearerTokenFile != tok || s.TLS.ServerName != "loki.internal" {
		t.Errorf("Security() = %+v", s)
	}

	for yaml, want := range map[string]string{
		"loki:\n  url: http://loki:3100\n  tls:\n    server_name: x\n":         "loki.tls: set, but loki.url http://loki:3100 is http://",
		"loki:\n  url: https://a:b@loki:3100\n":                                "loki.url: https://a:xxxxx@loki:3100 holds credentials",
		"loki:\n  url: https://loki:3100\n  tls:\n    ca_file: /nonexistent\n": "loki.tls.ca_file: open /nonexistent",
		"loki:\n  headers:\n    X-Scope-OrgID: t\n":                            "loki.headers.x-scope-orgid: may not be set here",
	} {
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(file, nil)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), file) {
			t.Errorf("%q: error %v, want one naming %s and %q", yaml, err, file, want)
		}
	}
}
