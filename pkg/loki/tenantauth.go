package loki

import (
	"fmt"
	"net/http"

	"go.uber.org/zap"
)

// validateCredentials checks one set of credentials (loki.basic_auth and
// loki.bearer_token(_file), or a loki.tenant_auth entry's), naming keys
// under prefix, reads the files named, and adds what is wrong to errs. It
// reports which kind is set.
func validateCredentials(prefix string, ba BasicAuth, token, tokenFile string, errs *[]error) (basic, bearer bool) {
	bad := func(key, format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	basic = ba.Username != "" || ba.Password != "" || ba.PasswordFile != ""
	switch {
	case ba.Password != "" && ba.PasswordFile != "":
		bad(prefix+".basic_auth.password_file", "set it or %s.basic_auth.password, not both", prefix)
	case basic && ba.Username == "":
		bad(prefix+".basic_auth.username", "must be set with a password")
	case basic && ba.Password == "" && ba.PasswordFile == "":
		bad(prefix+".basic_auth.password", "must be set, or %s.basic_auth.password_file, with %s.basic_auth.username", prefix, prefix)
	case ba.PasswordFile != "":
		if _, err := readSecretFile(prefix+".basic_auth.password_file", ba.PasswordFile); err != nil {
			*errs = append(*errs, err)
		}
	}
	bearer = token != "" || tokenFile != ""
	switch {
	case token != "" && tokenFile != "":
		bad(prefix+".bearer_token_file", "set it or %s.bearer_token, not both", prefix)
	case tokenFile != "":
		if _, err := readSecretFile(prefix+".bearer_token_file", tokenFile); err != nil {
			*errs = append(*errs, err)
		}
	}
	if basic && bearer {
		bad(prefix+".bearer_token", "set either %s.basic_auth or a bearer token, not both", prefix)
	}
	return basic, bearer
}

// validateTenantAuth checks loki.tenant_auth: each entry names a tenant not
// named before and carries exactly one kind of credential; what is wrong is
// added to errs. It reports whether there is any entry.
func (s Security) validateTenantAuth(errs *[]error) bool {
	bad := func(key, format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	seen := map[string]int{}
	for i, ta := range s.TenantAuth {
		key := fmt.Sprintf("loki.tenant_auth[%d]", i)
		if ta.Tenant == "" {
			bad(key+".tenant", "must be set")
		} else if j, dup := seen[ta.Tenant]; dup {
			bad(key+".tenant", "%q is loki.tenant_auth[%d]'s tenant too", ta.Tenant, j)
		} else {
			seen[ta.Tenant] = i
		}
		basic, bearer := validateCredentials(key, ta.BasicAuth, ta.BearerToken, ta.BearerTokenFile, errs)
		if !basic && !bearer {
			bad(key, "set basic_auth, bearer_token or bearer_token_file for tenant %q", ta.Tenant)
		}
	}
	return len(s.TenantAuth) > 0
}

// credential is what one request carries: basic auth, a bearer token, or
// nothing.
type credential struct {
	username string
	password secret // set with username
	token    secret
}

// newCredential turns validated settings into a credential; the file
// secrets' errors name keys under prefix.
func newCredential(prefix string, ba BasicAuth, token, tokenFile string, log *zap.Logger) credential {
	var c credential
	switch {
	case ba.Username != "":
		c.username = ba.Username
		c.password = fixedSecret(ba.Password)
		if ba.PasswordFile != "" {
			c.password = &fileSecret{key: prefix + ".basic_auth.password_file", path: ba.PasswordFile, log: log}
		}
	case token != "":
		c.token = fixedSecret(token)
	case tokenFile != "":
		c.token = &fileSecret{key: prefix + ".bearer_token_file", path: tokenFile, log: log}
	}
	return c
}

func (c credential) empty() bool { return c.password == nil && c.token == nil }

// apply sets r's Authorization header from c (none when c is empty).
func (c credential) apply(r *http.Request) error {
	switch {
	case c.password != nil:
		pw, err := c.password.get()
		if err != nil {
			return err
		}
		r.SetBasicAuth(c.username, pw)
	case c.token != nil:
		tok, err := c.token.get()
		if err != nil {
			return err
		}
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}
