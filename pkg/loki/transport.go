package loki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// Security is how podtail checks Loki (TLS roots, server name) and proves
// itself to Loki or to the gateway in front of it (client certificate, basic
// auth or a bearer token), plus extra headers such a gateway may want.
//
// The fields hold secrets in the clear; they must never be logged, and no
// error built here quotes them.
type Security struct {
	TLS       TLS
	BasicAuth BasicAuth
	// BearerToken is sent as "Authorization: Bearer <token>".
	BearerToken string
	// BearerTokenFile holds the bearer token (surrounding white space is
	// ignored). It is read again whenever it changes, so a rotated token
	// takes effect without a restart.
	BearerTokenFile string
	// Headers are set on every request. X-Scope-OrgID is refused: the tenant
	// is podtail's to set, from the container's tenant label, and a fixed
	// header would put every tenant's lines under one tenant.
	Headers map[string]string
	// TenantAuth are per-tenant credentials: a request whose X-Scope-OrgID
	// is one of these tenants carries that tenant's credentials instead of
	// BasicAuth or BearerToken(File), so a gateway that maps credentials to
	// tenants accepts each tenant's pushes and queries.
	TenantAuth []TenantAuth
}

// TenantAuth is one tenant's credentials: basic auth or a bearer token.
type TenantAuth struct {
	Tenant          string
	BasicAuth       BasicAuth
	BearerToken     string
	BearerTokenFile string
}

// TLS configures https:// connections to Loki.
type TLS struct {
	// CAFile is a PEM bundle of the authorities Loki's certificate must chain
	// to. It replaces the system's roots; empty uses the system's. It is read
	// at start-up: a changed bundle takes a restart.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key (PEM),
	// shown when Loki asks for one. Both are read again when either changes,
	// so a renewed certificate is used without a restart.
	CertFile string
	KeyFile  string
	// ServerName is the name Loki's certificate must carry, when it is not
	// the URL's host (connecting by IP address, say).
	ServerName string
	// InsecureSkipVerify accepts any certificate from Loki. For tests only:
	// anybody on the path can then read and change what podtail sends,
	// credentials included. New logs a warning when it is set.
	InsecureSkipVerify bool
}

// BasicAuth is HTTP basic authentication.
type BasicAuth struct {
	Username string
	Password string
	// PasswordFile holds the password instead (surrounding white space is
	// ignored); it is read again whenever it changes.
	PasswordFile string
}

// tlsSet reports whether any TLS setting is made, which only an https:// URL
// can honour.
func (t TLS) tlsSet() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// sendsCredentials reports whether requests carry a password or token.
func (s Security) sendsCredentials() bool {
	return s.BasicAuth.Username != "" || s.BearerToken != "" || s.BearerTokenFile != "" || len(s.Headers) > 0 || len(s.TenantAuth) > 0
}

// forbiddenHeaders may not be set through Headers: the tenant header is
// podtail's, and the others describe the push body or the connection, which
// the push code and net/http own.
var forbiddenHeaders = map[string]string{
	"X-Scope-Orgid":     "the tenant header is podtail's: it comes from the container's tenant label, per entry",
	"Host":              "set by the URL (for TLS, see loki.tls.server_name)",
	"Content-Type":      "set by the push",
	"Content-Encoding":  "set by the push",
	"Content-Length":    "set by the push",
	"Transfer-Encoding": "set by net/http",
	"Connection":        "set by net/http",
}

// Validate checks every setting, each error naming its key, and reads the
// files named (CA bundle, client certificate and key, password and token
// files) so that a missing or malformed one is reported at start-up, naming
// the file. It never quotes a secret.
func (s Security) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	t := s.TLS
	if t.CAFile != "" {
		if _, err := loadCAs(t.CAFile); err != nil {
			errs = append(errs, err)
		}
		if t.InsecureSkipVerify {
			bad("loki.tls.insecure_skip_verify", "true ignores loki.tls.ca_file %s; set one or the other", t.CAFile)
		}
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		bad("loki.tls.key_file", "must be set with loki.tls.cert_file (%s)", t.CertFile)
	case t.KeyFile != "" && t.CertFile == "":
		bad("loki.tls.cert_file", "must be set with loki.tls.key_file (%s)", t.KeyFile)
	case t.CertFile != "":
		if _, err := loadKeyPair(t.CertFile, t.KeyFile); err != nil {
			errs = append(errs, err)
		}
	}

	basic, bearer := validateCredentials("loki", s.BasicAuth, s.BearerToken, s.BearerTokenFile, &errs)
	perTenant := s.validateTenantAuth(&errs)

	for _, name := range sortedKeys(s.Headers) {
		key := "loki.headers." + name
		canon := http.CanonicalHeaderKey(name)
		if !validHeaderName(name) {
			bad("loki.headers", "%q is not a valid header name", name)
		} else if why, ok := forbiddenHeaders[canon]; ok {
			bad(key, "may not be set here: %s", why)
		} else if canon == "Authorization" && (basic || bearer || perTenant) {
			bad(key, "conflicts with loki.basic_auth / loki.bearer_token / loki.tenant_auth; use one")
		}
		if strings.ContainsAny(s.Headers[name], "\r\n\x00") {
			bad(key, "the value holds a line break or NUL") // never the value itself
		}
	}
	return errors.Join(errs...)
}

// NewTransport validates s and returns the round tripper for Loki: a clone of
// http.DefaultTransport (so CloseIdleConnections touches nobody else's
// connections) with s's TLS settings, wrapped to add s's headers and
// credentials to every request. Proxy settings from the environment apply as
// for any Go program.
func NewTransport(s Security, log *zap.Logger) (http.RoundTripper, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s.transport(log)
}

// transport is New's round tripper, with a warning for each setting that
// leaves what podtail sends open to anybody on the path. c has been
// validated.
func (c Config) transport(log *zap.Logger) (http.RoundTripper, error) {
	if c.Security.TLS.InsecureSkipVerify {
		log.Warn("loki.tls.insecure_skip_verify is true: Loki's certificate is NOT checked; anybody on the path " +
			"can read and change every line and credential podtail sends. Use loki.tls.ca_file instead.")
	}
	if c.Security.sendsCredentials() && strings.HasPrefix(c.URL, "http://") {
		log.Warn("Credentials or headers for Loki go over plain http://: anybody on the path can read them. Use https://.")
	}
	return c.Security.transport(log)
}

// transport builds what NewTransport returns; s has been validated.
func (s Security) transport(log *zap.Logger) (http.RoundTripper, error) {
	if log == nil {
		log = zap.NewNop()
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Every tenant's worker pushes to the one Loki host, at once: Go keeps
	// two idle connections per host by default, so with ten tenants eight
	// were closed after each push and dialled again for the next (a TLS
	// handshake each, over https).
	base.MaxIdleConnsPerHost = base.MaxIdleConns
	dial := base.DialContext
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return copyConn{c}, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         s.TLS.ServerName,
		InsecureSkipVerify: s.TLS.InsecureSkipVerify, //nolint:gosec // opt-in, warned about
	}
	if s.TLS.CAFile != "" {
		pool, err := loadCAs(s.TLS.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if s.TLS.CertFile != "" {
		kp := &keyPair{certFile: s.TLS.CertFile, keyFile: s.TLS.KeyFile, log: log}
		if _, err := kp.get(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	base.TLSClientConfig = tc

	a := &authTransport{base: base}
	for _, name := range sortedKeys(s.Headers) {
		a.headers = append(a.headers, [2]string{http.CanonicalHeaderKey(name), s.Headers[name]})
	}
	a.def = newCredential("loki", s.BasicAuth, s.BearerToken, s.BearerTokenFile, log)
	for i, ta := range s.TenantAuth {
		if a.tenants == nil {
			a.tenants = map[string]credential{}
		}
		a.tenants[ta.Tenant] = newCredential(fmt.Sprintf("loki.tenant_auth[%d]", i), ta.BasicAuth, ta.BearerToken, ta.BearerTokenFile, log)
	}
	if len(a.headers) == 0 && a.def.empty() && a.tenants == nil {
		return base, nil
	}
	return a, nil
}

// copyConn writes a request body through a pooled buffer. The transport
// hands a body with a length to the connection's ReadFrom behind an
// io.LimitReader, and a TCP connection that cannot splice or sendfile from
// it copies through a new 32 KiB buffer: per push, 45 % of what podtail
// allocated over 100 files. (Over https the TLS connection does the same
// copy, and this one only sees encrypted writes.)
type copyConn struct{ net.Conn }

var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (c copyConn) ReadFrom(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, r, buf[:])
}

// authTransport adds headers and credentials to each request on its way to
// base.
type authTransport struct {
	base    *http.Transport
	headers [][2]string // canonical name, value
	def     credential
	tenants map[string]credential // by X-Scope-OrgID
}

// RoundTrip sends a copy of req (a RoundTripper must not change its
// argument) carrying the configured headers and credentials.
func (a *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	for _, h := range a.headers {
		r.Header.Set(h[0], h[1])
	}
	c, ok := a.tenants[r.Header.Get("X-Scope-OrgID")]
	if !ok {
		c = a.def
	}
	if err := c.apply(r); err != nil {
		closeBody(req)
		return nil, err
	}
	return a.base.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach base.
func (a *authTransport) CloseIdleConnections() { a.base.CloseIdleConnections() }

// closeBody keeps RoundTrip's promise to close the body, errors included.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// secret is a password or token, fixed or read from a file.
type secret interface{ get() (string, error) }

type fixedSecret string

func (f fixedSecret) get() (string, error) { return string(f), nil }

// fileSecret is a secret kept in a file that may be replaced at any time (a
// rotated token, a renamed-into-place Kubernetes or systemd credential). Each
// get costs one stat; the file is read again when its identity, size or
// modification time has changed. A file that cannot be read fails the
// request, which the push retries: a rotation caught half-way resolves itself.
type fileSecret struct {
	key, path string
	log       *zap.Logger

	mu    sync.Mutex
	info  os.FileInfo // of the file value was read from
	value string
}

func (f *fileSecret) get() (string, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", f.key, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.info != nil && !changed(f.info, fi) {
		return f.value, nil
	}
	v, err := readSecretFile(f.key, f.path)
	if err != nil {
		return "", err
	}
	if f.info != nil {
		f.log.Info("Secret file changed; using its new content", zap.String("key", f.key), zap.String("file", f.path))
	}
	f.info, f.value = fi, v
	return v, nil
}

// keyPair is the client certificate, loaded again when either file changes.
type keyPair struct {
	certFile, keyFile string
	log               *zap.Logger

	mu                sync.Mutex
	certInfo, keyInfo os.FileInfo
	cert              *tls.Certificate
}

func (k *keyPair) get() (*tls.Certificate, error) {
	ci, err := os.Stat(k.certFile)
	if err != nil {
		return nil, fmt.Errorf("loki.tls.cert_file: %w", err)
	}
	ki, err := os.Stat(k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("loki.tls.key_file: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && !changed(k.certInfo, ci) && !changed(k.keyInfo, ki) {
		return k.cert, nil
	}
	c, err := loadKeyPair(k.certFile, k.keyFile)
	if err != nil {
		return nil, err
	}
	if k.cert != nil {
		k.log.Info("Client certificate changed; using the new one", zap.String("cert_file", k.certFile), zap.String("key_file", k.keyFile))
	}
	k.cert, k.certInfo, k.keyInfo = c, ci, ki
	return c, nil
}

// changed reports whether the file now described by b is not the one a
// described.
func changed(a, b os.FileInfo) bool {
	return !os.SameFile(a, b) || a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime())
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loki.tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("loki.tls.ca_file: %s holds no PEM certificate", path)
	}
	return pool, nil
}

func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		// LoadX509KeyPair's errors name neither file nor key.
		return nil, fmt.Errorf("loki.tls.cert_file %s, loki.tls.key_file %s: %w", certFile, keyFile, err)
	}
	return &c, nil
}

// readSecretFile reads a password or token file; its content never appears
// in an error.
func readSecretFile(key, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s: %s is empty", key, path)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return "", fmt.Errorf("%s: %s holds more than one line", key, path)
	}
	return v, nil
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
