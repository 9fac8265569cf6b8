package testbed

import (
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // nginx's {SSHA} scheme is salted SHA-1; a test bed's passwords
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// GatewayUser is one credential of the gateway: the basic-auth user and
// password, and the tenant (X-Scope-OrgID) its requests are for.
type GatewayUser struct {
	User, Password, Tenant string
}

// Gateway is nginx (Debian's, run as a plain process with a prefix
// directory and configuration of its own) in front of a DistributedLoki:
// pushes to the write target, queries and tails (WebSocket) to the read
// target, every request authenticated, its X-Scope-OrgID set from the
// user, and a request naming another tenant refused (403).
type Gateway struct {
	URL  string
	dir  string
	port int
	svc  *Service
}

// gatewayConf is the test bed's gateway; contrib/loki/distributed/gateway.conf
// is the same for operators, with comments. $loki_tenant_refused is checked
// in nginx's rewrite phase, before auth_basic: it lets through a request
// without X-Scope-OrgID (the gateway sets it), one naming the user's own
// tenant, and one whose user has no tenant (none given, or unknown), which
// auth_basic then answers 401.
var gatewayConf = template.Must(template.New("nginx").Parse(`{{if .Root}}user root;
{{end}}worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 1024; }
http {
  access_log {{.Dir}}/access.log;
  client_body_temp_path {{.Dir}}/tmp/body;
  proxy_temp_path {{.Dir}}/tmp/proxy;
  fastcgi_temp_path {{.Dir}}/tmp/fastcgi;
  uwsgi_temp_path {{.Dir}}/tmp/uwsgi;
  scgi_temp_path {{.Dir}}/tmp/scgi;
  client_max_body_size 16m;
  map $remote_user $loki_tenant {
    default "";
{{range .Users}}    "{{.User}}" "{{.Tenant}}";
{{end}}  }
  map "$http_x_scope_orgid:$loki_tenant" $loki_tenant_refused {
    default 1;
    "~^:" 0;
    "~:$" 0;
    "~^([^:]+):\1$" 0;
  }
  map $http_upgrade $loki_connection {
    default upgrade;
    "" "";
  }
  upstream loki_write { server {{.Write}}; keepalive 16; }
  upstream loki_read { server {{.Read}}; keepalive 16; }
  server {
    listen 127.0.0.1:{{.Port}};
    auth_basic "loki";
    auth_basic_user_file {{.Dir}}/htpasswd;
    proxy_http_version 1.1;
    location = /ready {
      auth_basic off;
      proxy_pass http://loki_write;
    }
    location = /loki/api/v1/push {
      if ($loki_tenant_refused) { return 403; }
      proxy_set_header X-Scope-OrgID $loki_tenant;
      proxy_set_header Authorization "";
      proxy_set_header Connection "";
      proxy_pass http://loki_write;
    }
    location = /loki/api/v1/tail {
      if ($loki_tenant_refused) { return 403; }
      proxy_set_header X-Scope-OrgID $loki_tenant;
      proxy_set_header Authorization "";
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $loki_connection;
      proxy_read_timeout 1h;
      proxy_pass http://loki_read;
    }
    location /loki/api/v1/ {
      if ($loki_tenant_refused) { return 403; }
      proxy_set_header X-Scope-OrgID $loki_tenant;
      proxy_set_header Authorization "";
      proxy_set_header Connection "";
      proxy_pass http://loki_read;
    }
    location / { return 404; }
  }
}
`))

// Htpasswd returns an nginx auth_basic_user_file line for user: the
// password hashed with a random salt ({SSHA}, RFC 2307).
func Htpasswd(user, password string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt)
	h := sha1.Sum(append([]byte(password), salt...)) //nolint:gosec // see import
	return user + ":{SSHA}" + base64.StdEncoding.EncodeToString(append(h[:], salt...))
}

// StartGateway writes the gateway's configuration and htpasswd under dir
// and starts nginx on a free port in front of writeURL and readURL.
func StartGateway(dir, writeURL, readURL string, users []GatewayUser) (*Gateway, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	var pw strings.Builder
	for _, u := range users {
		if strings.ContainsAny(u.User+u.Tenant, "\":\n ") {
			return nil, fmt.Errorf("gateway user %q, tenant %q: no quotes, colons or blanks", u.User, u.Tenant)
		}
		pw.WriteString(Htpasswd(u.User, u.Password) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(pw.String()), 0o600); err != nil {
		return nil, err
	}
	g := &Gateway{dir: dir, port: FreePort()}
	g.URL = fmt.Sprintf("http://127.0.0.1:%d", g.port)
	var conf strings.Builder
	err := gatewayConf.Execute(&conf, map[string]any{
		"Root": os.Geteuid() == 0, "Dir": dir, "Users": users, "Port": g.port,
		"Write": strings.TrimPrefix(writeURL, "http://"), "Read": strings.TrimPrefix(readURL, "http://"),
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	return g, g.Start()
}

// Nginx is the nginx binary testbed.sh installed.
func Nginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("nginx is not installed: run through e2e/testbed/testbed.sh")
}

// Start starts the gateway (again, on its port) and waits until it proxies
// /ready.
func (g *Gateway) Start() error {
	bin, err := Nginx()
	if err != nil {
		return err
	}
	s, err := start(bin, filepath.Join(g.dir, "nginx.out"), nil,
		"-p", g.dir, "-e", filepath.Join(g.dir, "error.log"), "-c", filepath.Join(g.dir, "nginx.conf"), "-g", "daemon off;")
	if err != nil {
		return err
	}
	g.svc = s
	if err := WaitHTTP(g.URL+"/ready", 30*time.Second); err != nil {
		s.Stop()
		b, _ := os.ReadFile(filepath.Join(g.dir, "error.log"))
		o, _ := os.ReadFile(s.Log)
		return fmt.Errorf("gateway not ready: %w\n%s%s", err, o, b)
	}
	return nil
}

// Stop stops nginx (SIGINT: fast shutdown, open connections are closed).
func (g *Gateway) Stop() { g.svc.Stop() }
