package loki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// testCA issues certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key (PEM) for cn, a server's when names
// are given, else a client's.
func (ca *testCA) issue(t *testing.T, cn string, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(names) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, n)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceFile renames a new file into place, as Kubernetes and most
// rotation tools do.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	writeFile(t, path+".new", data)
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// get sends a GET through rt and returns the body, or the error.
func get(rt http.RoundTripper, url string) (string, error) {
	c := &http.Client{Transport: rt}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(resp.Status + ": " + string(b))
	}
	return string(b), nil
}

// Every bad setting is reported at once, each naming its key and, for a
// file, the file; no error ever quotes a secret.
func TestSecurityValidate(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	certPEM, keyPEM := ca.issue(t, "podtail")
	caFile := writeFile(t, filepath.Join(dir, "ca.pem"), ca.pem)
	certFile := writeFile(t, filepath.Join(dir, "cert.pem"), certPEM)
	keyFile := writeFile(t, filepath.Join(dir, "key.pem"), keyPEM)
	notPEM := writeFile(t, filepath.Join(dir, "not.pem"), []byte("hello"))
	empty := writeFile(t, filepath.Join(dir, "empty"), []byte(" \n"))
	twoLines := writeFile(t, filepath.Join(dir, "two"), []byte("Sup3rSecret\nSup3rSecret\n"))
	missing := filepath.Join(dir, "missing")

	valid := Security{
		TLS:         TLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "loki"},
		BearerToken: "Sup3rSecret",
		Headers:     map[string]string{"X-Gateway": "Sup3rSecret"},
	}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid: %v", err)
	}
	for _, tc := range []struct {
		name string
		s    Security
		want []string
	}{
		{"ca missing", Security{TLS: TLS{CAFile: missing}}, []string{"loki.tls.ca_file", missing, "no such file"}},
		{"ca not pem", Security{TLS: TLS{CAFile: notPEM}}, []string{"loki.tls.ca_file", notPEM, "no PEM certificate"}},
		{"ca and insecure", Security{TLS: TLS{CAFile: caFile, InsecureSkipVerify: true}}, []string{"loki.tls.insecure_skip_verify"}},
		{"key without cert", Security{TLS: TLS{KeyFile: keyFile}}, []string{"loki.tls.cert_file: must be set", keyFile}},
		{"cert without key", Security{TLS: TLS{CertFile: certFile}}, []string{"loki.tls.key_file: must be set", certFile}},
		{"cert is the CA's, key mismatched", Security{TLS: TLS{CertFile: caFile, KeyFile: keyFile}}, []string{"loki.tls.cert_file " + caFile, "loki.tls.key_file " + keyFile}},
		{"key missing", Security{TLS: TLS{CertFile: certFile, KeyFile: missing}}, []string{"loki.tls.key_file " + missing}},
		{"password and file", Security{BasicAuth: BasicAuth{Username: "u", Password: "Sup3rSecret", PasswordFile: empty}}, []string{"loki.basic_auth.password_file: set it or"}},
		{"password without user", Security{BasicAuth: BasicAuth{Password: "Sup3rSecret"}}, []string{"loki.basic_auth.username"}},
		{"user without password", Security{BasicAuth: BasicAuth{Username: "u"}}, []string{"loki.basic_auth.password: must be set"}},
		{"password file empty", Security{BasicAuth: BasicAuth{Username: "u", PasswordFile: empty}}, []string{"loki.basic_auth.password_file", empty, "is empty"}},
		{"token and file", Security{BearerToken: "Sup3rSecret", BearerTokenFile: missing}, []string{"loki.bearer_token_file: set it or"}},
		{"token file missing", Security{BearerTokenFile: missing}, []string{"loki.bearer_token_file", missing}},
		{"token file two lines", Security{BearerTokenFile: twoLines}, []string{"loki.bearer_token_file", twoLines, "more than one line"}},
		{"basic and bearer", Security{BasicAuth: BasicAuth{Username: "u", Password: "Sup3rSecret"}, BearerToken: "Sup3rSecret"}, []string{"loki.bearer_token: set either"}},
		{"tenant header", Security{Headers: map[string]string{"x-scope-orgid": "Sup3rSecret"}}, []string{"loki.headers.x-scope-orgid", "tenant header is podtail's"}},
		{"content type", Security{Headers: map[string]string{"Content-Type": "text/plain"}}, []string{"loki.headers.Content-Type"}},
		{"authorization with token", Security{BearerToken: "Sup3rSecret", Headers: map[string]string{"Authorization": "Sup3rSecret"}}, []string{"loki.headers.Authorization: conflicts"}},
		{"bad header name", Security{Headers: map[string]string{"X Key": "v"}}, []string{`loki.headers: "X Key" is not a valid header name`}},
		{"bad header value", Security{Headers: map[string]string{"X-Key": "Sup3rSecret\r\nX-Scope-OrgID: other"}}, []string{"loki.headers.X-Key: the value holds a line break"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "Sup3rSecret") {
				t.Errorf("error quotes a secret: %v", err)
			}
			if _, err := NewTransport(tc.s, nil); err == nil {
				t.Error("NewTransport accepted it")
			}
		})
	}

	// loki.Config adds the URL's part: TLS settings need https://, and
	// credentials belong in their keys, not in a URL that is logged.
	for url, want := range map[string]string{
		"http://loki:3100":                "loki.tls: set, but loki.url http://loki:3100 is http://",
		"https://u:Sup3rSecret@loki:3100": "loki.url: https://u:xxxxx@loki:3100 holds credentials",
	} {
		err := Config{URL: url, Security: Security{TLS: TLS{ServerName: "loki"}}}.withDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "Sup3rSecret") {
			t.Errorf("%s: error %v, want %q", url, err, want)
		}
	}
}

// Over TLS: the CA bundle replaces the system roots, server_name is what
// the certificate is checked against, the client certificate is shown, and
// a renewed client certificate is picked up without a new transport. A
// wrong CA fails with the certificate problem in the error.
func TestTransportTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "test ca")
	srvCert, srvKey := ca.issue(t, "loki", "loki.test") // no IP: 127.0.0.1 needs server_name
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes below are the point
	srv.StartTLS()
	defer srv.Close()

	caFile := writeFile(t, filepath.Join(dir, "ca.pem"), ca.pem)
	cert1, key1 := ca.issue(t, "podtail-1")
	certFile := writeFile(t, filepath.Join(dir, "client.pem"), cert1)
	keyFile := writeFile(t, filepath.Join(dir, "client.key"), key1)
	good := Security{TLS: TLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "loki.test"}}

	rt, err := NewTransport(good, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if cn, err := get(rt, srv.URL); err != nil || cn != "podtail-1" {
		t.Fatalf("with CA, client cert and server_name: %q, %v", cn, err)
	}
	// Renewal: new pair renamed into place; the next handshake shows it.
	cert2, key2 := ca.issue(t, "podtail-2")
	replaceFile(t, keyFile, key2)
	replaceFile(t, certFile, cert2)
	if cn, err := get(rt, srv.URL); err != nil || cn != "podtail-2" {
		t.Fatalf("after renewal: %q, %v", cn, err)
	}

	otherCA := newTestCA(t, "other ca")
	for name, tc := range map[string]struct {
		s    Security
		want string
	}{
		"wrong CA":       {Security{TLS: TLS{CAFile: writeFile(t, filepath.Join(dir, "other.pem"), otherCA.pem), CertFile: certFile, KeyFile: keyFile, ServerName: "loki.test"}}, "certificate signed by unknown authority"},
		"no server_name": {Security{TLS: TLS{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}}, "127.0.0.1 because it doesn't contain any IP SANs"},
		"no client cert": {Security{TLS: TLS{CAFile: caFile, ServerName: "loki.test"}}, "certificate required"},
		"system roots":   {Security{TLS: TLS{CertFile: certFile, KeyFile: keyFile, ServerName: "loki.test"}}, "certificate signed by unknown authority"},
	} {
		rt, err := NewTransport(tc.s, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := get(rt, srv.URL); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}

	insecure := Security{TLS: TLS{CertFile: certFile, KeyFile: keyFile, InsecureSkipVerify: true}}
	rt, err = NewTransport(insecure, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(rt, srv.URL); err != nil {
		t.Errorf("insecure_skip_verify: %v", err)
	}
}

// Headers and credentials are added to a copy of each request; a token or
// password file is read again when it changes (in place or renamed), and a
// token file that disappears fails the request naming the key and file.
func TestTransportCredentials(t *testing.T) {
	type seen struct{ auth, key, tenant string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("Authorization"), r.Header.Get("X-Gateway-Key"), r.Header.Get("X-Scope-OrgID")}
	}))
	defer srv.Close()
	dir := t.TempDir()
	tokFile := writeFile(t, filepath.Join(dir, "token"), []byte("token-1\n"))
	pwFile := writeFile(t, filepath.Join(dir, "password"), []byte("pw-1"))

	send := func(t *testing.T, rt http.RoundTripper) (seen, error) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("body"))
		req.Header.Set("X-Scope-OrgID", "acme")
		c := &http.Client{Transport: rt}
		defer c.CloseIdleConnections()
		resp, err := c.Do(req)
		if err != nil {
			return seen{}, err
		}
		resp.Body.Close()
		if len(req.Header) != 1 {
			t.Errorf("the caller's request was changed: %v", req.Header)
		}
		return <-got, nil
	}
	mustSend := func(t *testing.T, rt http.RoundTripper, want seen) {
		t.Helper()
		s, err := send(t, rt)
		if err != nil {
			t.Fatal(err)
		}
		if s != want {
			t.Errorf("server saw %+v, want %+v", s, want)
		}
	}
	basic := func(u, p string) string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(u, p)
		return r.Header.Get("Authorization")
	}

	t.Run("basic auth and a header", func(t *testing.T) {
		rt, err := NewTransport(Security{BasicAuth: BasicAuth{Username: "u", Password: "pw"}, Headers: map[string]string{"x-gateway-key": "k"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustSend(t, rt, seen{basic("u", "pw"), "k", "acme"})
	})
	t.Run("password file rotated", func(t *testing.T) {
		rt, err := NewTransport(Security{BasicAuth: BasicAuth{Username: "u", PasswordFile: pwFile}}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		mustSend(t, rt, seen{basic("u", "pw-1"), "", "acme"})
		replaceFile(t, pwFile, []byte("pw-2"))
		mustSend(t, rt, seen{basic("u", "pw-2"), "", "acme"})
	})
	t.Run("bearer token file rotated", func(t *testing.T) {
		rt, err := NewTransport(Security{BearerTokenFile: tokFile}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		mustSend(t, rt, seen{"Bearer token-1", "", "acme"})
		writeFile(t, tokFile, []byte("token-22\n")) // in place
		mustSend(t, rt, seen{"Bearer token-22", "", "acme"})
		replaceFile(t, tokFile, []byte("token-3"))
		mustSend(t, rt, seen{"Bearer token-3", "", "acme"})
		if err := os.Remove(tokFile); err != nil {
			t.Fatal(err)
		}
		if _, err := send(t, rt); err == nil || !strings.Contains(err.Error(), "loki.bearer_token_file: stat "+tokFile) {
			t.Errorf("token file gone: error %v", err)
		}
	})
	t.Run("nothing to add", func(t *testing.T) {
		rt, err := NewTransport(Security{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rt.(*http.Transport); !ok {
			t.Errorf("transport is %T, want a plain *http.Transport", rt)
		}
		if rt == http.DefaultTransport {
			t.Error("shares http.DefaultTransport")
		}
		mustSend(t, rt, seen{"", "", "acme"})
	})
}

// The client pushes through the configured transport: a bearer token
// reaches Loki beside each tenant's own X-Scope-OrgID, and a 401 (wrong
// token) is, as for any 4xx but 429, a counted and acknowledged drop, not
// an endless retry.
func TestClientUsesSecurity(t *testing.T) {
	f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, tenant string) bool {
		if r.Header.Get("Authorization") != "Bearer right" {
			http.Error(w, "no", http.StatusUnauthorized)
			return false
		}
		return true
	})
	for _, tc := range []struct {
		token string
		sent  float64
	}{{"right", 1}, {"wrong", 0}} {
		cfg := testConfig(f.srv.URL)
		cfg.Security = Security{BearerToken: tc.token}
		c, stop := startClient(t, cfg)
		a := newAcker(t)
		mustConsume(t, c, entry("acme", `{app="x"}`, base, "line-"+tc.token, a, 1))
		flush(t, c)
		a.waitSettled(1)
		stop()
		if got := testutil.ToFloat64(c.m.entriesSent.WithLabelValues("acme")); got != tc.sent {
			t.Errorf("token %s: %v entries sent, want %v", tc.token, got, tc.sent)
		}
		if got := testutil.ToFloat64(c.m.dropped.WithLabelValues("acme", "rejected_401")); got != 1-tc.sent {
			t.Errorf("token %s: %v entries dropped as rejected_401, want %v", tc.token, got, 1-tc.sent)
		}
		if got := testutil.CollectAndCount(c.m.retries); got != 0 {
			t.Errorf("token %s: retried (%d retry series)", tc.token, got)
		}
	}
	if got := flatten(f.recorded("acme")...); len(got) != 1 || !strings.HasSuffix(got[0], "|line-right") {
		t.Errorf("fake Loki stored %v, want only line-right", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.requests["acme"]; n != 2 {
		t.Errorf("fake Loki saw %d requests for acme, want 2 (one per token: no retry of the 401)", n)
	}
}

// Tenants push at once, each on its own connection: the connections are
// kept between pushes, not closed and dialled again for every push (Go's
// default keeps two idle per host; with ten tenants pushing together the
// other eight were dialled anew each time, and over TLS each dial is a
// handshake).
func TestConcurrentTenantsReuseConnections(t *testing.T) {
	const tenants, rounds = 10, 5
	var conns atomic.Int32
	var mu sync.Mutex
	inFlight, all := 0, make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		// Hold each push until all tenants' pushes of the round are in
		// flight (or a while has passed): they are concurrent.
		mu.Lock()
		inFlight++
		ch := all
		if inFlight == tenants {
			close(all)
			all, inFlight = make(chan struct{}), 0
		}
		mu.Unlock()
		select {
		case <-ch:
		case <-time.After(time.Second):
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL)
	cfg.BatchWait = 5 * time.Millisecond
	c, _ := startClient(t, cfg)
	ackers := make([]*acker, tenants)
	for i := range ackers {
		ackers[i] = newAcker(t)
	}
	for round := 1; round <= rounds; round++ {
		for i, a := range ackers {
			mustConsume(t, c, entry(fmt.Sprint("t", i), `{app="a"}`, base+int64(round), "line", a, int64(round)))
		}
		for _, a := range ackers {
			a.waitSettled(int64(round))
		}
	}
	t.Logf("%d connections", conns.Load())
	if n := conns.Load(); n > tenants+2 {
		t.Errorf("%d connections for %d rounds of %d concurrent pushes; want about %d", n, rounds, tenants, tenants)
	}
}
