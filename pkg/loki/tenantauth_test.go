package loki

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// Each tenant's requests carry that tenant's credentials, others the
// global ones (or none); a bad entry is refused naming its key.
func TestTenantAuth(t *testing.T) {
	seen := make(chan [2]string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- [2]string{r.Header.Get("X-Scope-OrgID"), r.Header.Get("Authorization")}
	}))
	defer srv.Close()
	dir := t.TempDir()
	pwFile := writeFile(t, filepath.Join(dir, "beta.pw"), []byte("beta-pw\n"))
	tokFile := writeFile(t, filepath.Join(dir, "gamma.token"), []byte("gamma-token"))
	basic := func(u, p string) string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(u, p)
		return r.Header.Get("Authorization")
	}
	send := func(rt http.RoundTripper, tenant string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if tenant != "" {
			req.Header.Set("X-Scope-OrgID", tenant)
		}
		resp, err := (&http.Client{Transport: rt}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := <-seen
		if got[0] != tenant {
			t.Errorf("X-Scope-OrgID %q reached Loki as %q", tenant, got[0])
		}
		return got[1]
	}
	tenants := []TenantAuth{
		{Tenant: "alpha", BasicAuth: BasicAuth{Username: "agent-alpha", Password: "alpha-pw"}},
		{Tenant: "Beta", BasicAuth: BasicAuth{Username: "agent-beta", PasswordFile: pwFile}},
		{Tenant: "gamma", BearerTokenFile: tokFile},
	}

	t.Run("with global credentials", func(t *testing.T) {
		rt, err := NewTransport(Security{BasicAuth: BasicAuth{Username: "host", Password: "host-pw"}, TenantAuth: tenants}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for tenant, want := range map[string]string{
			"alpha": basic("agent-alpha", "alpha-pw"),
			"Beta":  basic("agent-beta", "beta-pw"),
			"gamma": "Bearer gamma-token",
			"beta":  basic("host", "host-pw"), // tenants are case-sensitive
			"other": basic("host", "host-pw"),
			"":      basic("host", "host-pw"), // /ready
		} {
			if got := send(rt, tenant); got != want {
				t.Errorf("tenant %q sent Authorization %q, want %q", tenant, got, want)
			}
		}
	})
	t.Run("without", func(t *testing.T) {
		rt, err := NewTransport(Security{TenantAuth: tenants[:1]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := send(rt, "alpha"); got != basic("agent-alpha", "alpha-pw") {
			t.Errorf("alpha sent %q", got)
		}
		if got := send(rt, "other"); got != "" {
			t.Errorf("a tenant without credentials sent %q", got)
		}
	})

	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		name string
		s    Security
		want []string
	}{
		{"no tenant", Security{TenantAuth: []TenantAuth{{BearerToken: "x"}}}, []string{"loki.tenant_auth[0].tenant: must be set"}},
		{"twice", Security{TenantAuth: []TenantAuth{tenants[0], tenants[0]}}, []string{`loki.tenant_auth[1].tenant: "alpha" is loki.tenant_auth[0]'s tenant too`}},
		{"no credentials", Security{TenantAuth: []TenantAuth{{Tenant: "alpha"}}}, []string{`loki.tenant_auth[0]: set basic_auth, bearer_token or bearer_token_file for tenant "alpha"`}},
		{"both kinds", Security{TenantAuth: []TenantAuth{{Tenant: "a", BasicAuth: BasicAuth{Username: "u", Password: "Sup3rSecret"}, BearerToken: "Sup3rSecret"}}},
			[]string{"loki.tenant_auth[0].bearer_token: set either loki.tenant_auth[0].basic_auth or a bearer token"}},
		{"user without password", Security{TenantAuth: []TenantAuth{{Tenant: "a", BasicAuth: BasicAuth{Username: "u"}}}},
			[]string{"loki.tenant_auth[0].basic_auth.password: must be set, or loki.tenant_auth[0].basic_auth.password_file"}},
		{"password file missing", Security{TenantAuth: []TenantAuth{{Tenant: "a", BasicAuth: BasicAuth{Username: "u", PasswordFile: missing}}}},
			[]string{"loki.tenant_auth[0].basic_auth.password_file: open " + missing}},
		{"token file missing", Security{TenantAuth: []TenantAuth{{Tenant: "a", BearerTokenFile: missing}}},
			[]string{"loki.tenant_auth[0].bearer_token_file: open " + missing}},
		{"authorization header", Security{TenantAuth: tenants[:1], Headers: map[string]string{"Authorization": "Sup3rSecret"}},
			[]string{"loki.headers.Authorization: conflicts with"}},
	} {
		err := c.s.Validate()
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "Sup3rSecret") {
			t.Errorf("%s: error quotes a secret: %v", c.name, err)
		}
	}
}
