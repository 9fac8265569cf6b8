package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The pushes of these tests go to a TLS proxy written here, in front of
// the test bed's real Loki, with a CA and certificates made for the test:
// what arrives in Loki is checked in Loki.

// pki is a test CA that issues server and client certificates.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newPKI(t *testing.T, cn string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{cert: cert, key: key, dir: t.TempDir()}
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.pem") }

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue writes a certificate and key for cn (a server's for dnsName when it
// is not empty, else a client's) and returns their files.
func (p *pki) issue(t *testing.T, cn, dnsName string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if dnsName != "" {
		tmpl.DNSNames, tmpl.ExtKeyUsage = []string{dnsName}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, cn+".pem", "CERTIFICATE", der), p.write(t, cn+".key", "EC PRIVATE KEY", kder)
}

// lokiProxy is an https:// front for the test bed's Loki, as a gateway
// would be: it can demand a client certificate and a bearer token, and it
// records what came through.
type lokiProxy struct {
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]bool // accepted bearer tokens; nil: none asked for
	pushes   int             // forwarded to Loki
	refused  map[string]int  // X-Scope-OrgID -> pushes answered 401
	peers    map[string]int  // client certificate CN -> pushes
	tenants  map[string]int  // X-Scope-OrgID -> pushes
	lastAuth string
}

// serverName is the only name in the proxy's certificate: podtail reaches it
// at 127.0.0.1, so the certificate checks need loki.tls.server_name.
const serverName = "loki.test"

func startLokiProxy(t *testing.T, ca *pki, clientCAs *pki) *lokiProxy {
	t.Helper()
	certFile, keyFile := ca.issue(t, "proxy", serverName)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(bed.lokiURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	p := &lokiProxy{peers: map[string]int{}, tenants: map[string]int{}, refused: map[string]int{}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		push := r.URL.Path == "/loki/api/v1/push"
		p.mu.Lock()
		if p.tokens != nil {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || !p.tokens[tok] {
				if push {
					p.refused[r.Header.Get("X-Scope-OrgID")]++
				}
				p.mu.Unlock()
				http.Error(w, "invalid bearer token", http.StatusUnauthorized)
				return
			}
			p.lastAuth = tok
		}
		if push {
			p.pushes++
			p.tenants[r.Header.Get("X-Scope-OrgID")]++
			if len(r.TLS.PeerCertificates) > 0 {
				p.peers[r.TLS.PeerCertificates[0].Subject.CommonName]++
			}
		}
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		pool := x509.NewCertPool()
		pool.AddCert(clientCAs.cert)
		p.srv.TLS.ClientAuth, p.srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests want
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	p.URL = p.srv.URL
	return p
}

func (p *lokiProxy) accept(tokens ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens = map[string]bool{}
	for _, tok := range tokens {
		p.tokens[tok] = true
	}
}

// counts returns the pushes of tenant that were forwarded and refused.
// (podtail collects every container on the machine, other tests' too, so
// only per-tenant counts mean anything.)
func (p *lokiProxy) counts(tenant string) (pushes, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tenants[tenant], p.refused[tenant]
}

// logEntries are podtail's JSON log lines whose message contains msg.
func logEntries(p *podtailProc, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(p.Log(), "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) == nil && strings.Contains(fmt.Sprint(e["msg"]), msg) {
			out = append(out, e)
		}
	}
	return out
}

// Through TLS with a client certificate: podtail checks the proxy against
// loki.tls.ca_file and server_name, shows its certificate, and every line
// arrives in Loki under its own tenant.
func TestLokiTLSClientCertificate(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "the Loki client does not depend on the log driver")
	ca := newPKI(t, "podtail test CA")
	proxy := startLokiProxy(t, ca, ca)
	certFile, keyFile := ca.issue(t, "podtail-client", "")
	p := startPodtail(t, podtailOpts{lokiURL: proxy.URL, lokiExtra: fmt.Sprintf(`tls:
  ca_file: %s
  cert_file: %s
  key_file: %s
  server_name: %s`, ca.caFile(), certFile, keyFile, serverName)})

	tenant := name("tlscert")
	const n = 500
	runContainer(t, name("tlscert"), tenant, "tlsapp", "v1", printLoop("tls", n, 0, false))
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), n, 60*time.Second)
	seqLines(t, lines(query(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant))), "tls-out-", n)

	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if proxy.tenants[tenant] == 0 || proxy.peers["podtail-client"] != proxy.pushes {
		t.Errorf("proxy saw %d pushes, by client certificate %v, by tenant %v", proxy.pushes, proxy.peers, proxy.tenants)
	}
	if e := logEntries(p, "unreachable"); len(e) > 0 {
		t.Errorf("start-up probe failed: %v", e)
	}
}

// With a bearer token from loki.bearer_token_file: pushes work; a rotated
// token (new file renamed into place, old token revoked) is used without a
// restart; a wrong token is refused with 401, which podtail counts and
// drops after one attempt per batch (pkg/loki treats 401 and 403 like any
// 4xx but 429: final); and the token never appears in podtail's log.
func TestLokiBearerToken(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "the Loki client does not depend on the log driver")
	ca := newPKI(t, "podtail test CA")
	proxy := startLokiProxy(t, ca, nil)
	const tok1, tok2, wrong = "tok-1-Sup3rSecret", "tok-2-Sup3rSecret", "tok-wrong-Sup3rSecret"
	proxy.accept(tok1)
	tokFile := filepath.Join(t.TempDir(), "token")
	setToken := func(tok string) {
		t.Helper()
		if err := os.WriteFile(tokFile+".new", []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tokFile+".new", tokFile); err != nil {
			t.Fatal(err)
		}
	}
	setToken(tok1)
	p := startPodtail(t, podtailOpts{lokiURL: proxy.URL, lokiExtra: fmt.Sprintf(`tls:
  ca_file: %s
  server_name: %s
bearer_token_file: %s`, ca.caFile(), serverName, tokFile)})

	const n = 200
	ship := func(step string) string {
		t.Helper()
		tenant := name("bearer", step)
		runContainer(t, name("bearer", step), tenant, "tokapp", "v1", printLoop(step, n, 0, false))
		return tenant
	}
	first := ship("first")
	waitCount(t, first, fmt.Sprintf(`{tenant=%q}`, first), n, 60*time.Second)

	// Rotation: accept both while the file changes, then revoke the old one.
	proxy.accept(tok1, tok2)
	setToken(tok2)
	proxy.accept(tok2)
	rotated := ship("rotated")
	waitCount(t, rotated, fmt.Sprintf(`{tenant=%q}`, rotated), n, 60*time.Second)
	for _, tenant := range []string{first, rotated} {
		if _, refused := proxy.counts(tenant); refused != 0 {
			t.Fatalf("proxy refused %d pushes of %s before the wrong token was set", refused, tenant)
		}
	}
	proxy.mu.Lock()
	last := proxy.lastAuth
	proxy.mu.Unlock()
	if last != tok2 {
		t.Errorf("after rotation podtail sent the old token")
	}

	// A wrong token: 401, counted as dropped, not retried forever.
	setToken(wrong)
	bad := ship("wrong")
	eventually(t, 60*time.Second, "the wrong token's lines counted as rejected_401", func() bool {
		return p.metric("podtail_loki_entries_dropped_total", "tenant", bad, "reason", "rejected_401") == n
	})
	_, refused := proxy.counts(bad)
	time.Sleep(3 * time.Second) // max_backoff is 1s: a retry would have come by now
	if _, again := proxy.counts(bad); again != refused || refused == 0 {
		t.Errorf("refused pushes went on: %d, then %d 3 s later", refused, again)
	}
	if got := p.metric("podtail_loki_push_retries_total", "tenant", bad); got != 0 {
		t.Errorf("%v retries of refused pushes", got)
	}
	if got := count(t, bad, fmt.Sprintf(`{tenant=%q}`, bad)); got != 0 {
		t.Errorf("%d lines with the wrong token reached Loki", got)
	}
	warned := false
	for _, e := range logEntries(p, "Loki refused a whole batch") {
		warned = warned || (e["status"] == float64(401) && e["tenant"] == bad)
	}
	if !warned {
		t.Errorf("no error naming status 401 and tenant %s in podtail's log", bad)
	}
	t.Logf("wrong token: %d entries dropped as rejected_401 after %d refused pushes, no retries", n, refused)

	// Fixed without a restart.
	setToken(tok2)
	fixed := ship("fixed")
	waitCount(t, fixed, fmt.Sprintf(`{tenant=%q}`, fixed), n, 60*time.Second)

	for _, tok := range []string{tok1, tok2, wrong} {
		if strings.Contains(p.Log(), tok) {
			t.Errorf("podtail's log shows a bearer token")
		}
	}
}

// With the wrong CA, podtail says in its log, at start-up and at the first
// failed push, which Loki URL failed and why (the certificate is signed by
// an unknown authority); the pushes are retried, not dropped, so once the
// CA is fixed and podtail restarted, every line arrives.
func TestLokiWrongCA(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "the Loki client does not depend on the log driver")
	ca := newPKI(t, "podtail test CA")
	other := newPKI(t, "some other CA")
	proxy := startLokiProxy(t, ca, nil)
	dataDir := t.TempDir()
	opts := func(caFile string) podtailOpts {
		return podtailOpts{dataDir: dataDir, lokiURL: proxy.URL, extra: "shutdown_timeout: 1s\n",
			lokiExtra: fmt.Sprintf("tls:\n  ca_file: %s\n  server_name: %s", caFile, serverName)}
	}
	p := startPodtail(t, opts(other.caFile()))

	tenant := name("wrongca")
	const n = 50
	runContainer(t, name("wrongca"), tenant, "caapp", "v1", printLoop("ca", n, 0, false))
	const why = "x509: certificate signed by unknown authority"
	var failed []map[string]any
	eventually(t, 30*time.Second, "a failed push of "+tenant+" in podtail's log", func() bool {
		failed = failed[:0]
		for _, e := range logEntries(p, "Push failed; retrying") {
			if e["tenant"] == tenant {
				failed = append(failed, e)
			}
		}
		return len(failed) > 0
	})
	for _, e := range failed {
		if !strings.HasPrefix(fmt.Sprint(e["loki_url"]), proxy.URL) || !strings.Contains(fmt.Sprint(e["error"]), why) {
			t.Errorf("push failure does not name the URL %s and %q: %v", proxy.URL, why, e)
		}
		t.Logf("podtail: %s loki_url=%v error=%v", e["msg"], e["loki_url"], e["error"])
	}
	probe := logEntries(p, "loki.url "+proxy.URL)
	if len(probe) == 0 || !strings.Contains(fmt.Sprint(probe[0]["msg"]), why) {
		t.Errorf("no start-up error naming %s and %q: %v", proxy.URL, why, probe)
	} else {
		t.Logf("podtail: %s", probe[0]["msg"])
	}
	if got := p.metric("podtail_loki_push_retries_total", "tenant", tenant, "reason", "network"); got == 0 {
		t.Error("no retries counted")
	}
	if got := p.metric("podtail_loki_entries_dropped_total", "tenant", tenant); got != 0 {
		t.Errorf("%v entries dropped", got)
	}
	if pushes, _ := proxy.counts(tenant); pushes != 0 {
		t.Errorf("%d pushes got through", pushes)
	}
	p.stop()

	startPodtail(t, opts(ca.caFile()))
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), n, 60*time.Second)
}
