// Package config is podtail's one typed configuration: defaults, loading from
// a YAML file, PODTAIL_* environment variables and command-line flags (in
// rising precedence) through viper, and validation that names every bad key.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/loki"
	"github.com/podtail/podtail/pkg/pipeline"
)

// EnvPrefix is the prefix of every environment variable podtail reads:
// key loki.url is PODTAIL_LOKI_URL.
const EnvPrefix = "PODTAIL"

// Config is everything `podtail run` needs.
type Config struct {
	Podman    Podman    `mapstructure:"podman"`
	Discovery Discovery `mapstructure:"discovery"`
	Loki      Loki      `mapstructure:"loki"`
	// DataDir holds positions (and, later, the spool). It must survive
	// restarts, or a restart re-sends everything.
	DataDir string `mapstructure:"data_dir"`
	Server  Server `mapstructure:"server"`
	Log     Log    `mapstructure:"log"`
	Files   Files  `mapstructure:"files"`
	// Limits are the per-tenant guards against a tenant's hostile or
	// runaway output.
	Limits Limits `mapstructure:"limits"`
	// Pipeline lists the processing stages for each kind of source.
	Pipeline Pipelines `mapstructure:"pipeline"`
	// ShutdownTimeout bounds how long a stop may spend delivering what was
	// read; what is not delivered by then is read again after the restart.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// MemoryLimit is the resident memory podtail aims to stay under, through
	// Go's soft limit (GOMEMLIMIT); 0 leaves the runtime's default.
	// loki.queue_bytes must fit in half of it.
	MemoryLimit ByteSize `mapstructure:"memory_limit"`
	Spool       Spool    `mapstructure:"spool"`
}

// Spool keeps removed containers' logs until they are delivered.
type Spool struct {
	// Enabled keeps a removed container's undelivered output in
	// data_dir/spool until Loki has it, across restarts: a hard link to each
	// container's log where data_dir shares Podman's mount, else a copy of
	// the undelivered part made when the container is removed.
	Enabled bool `mapstructure:"enabled"`
}

// Podman says how to reach the Podman API.
type Podman struct {
	// Enabled false runs podtail on static file targets only.
	Enabled bool `mapstructure:"enabled"`
	// Socket is a unix:// (or tcp://) URI. Empty: CONTAINER_HOST, then the
	// rootless $XDG_RUNTIME_DIR/podman/podman.sock, then /run/podman/podman.sock.
	Socket string `mapstructure:"socket"`
	// ReconcileInterval is how often the full container list is compared
	// with what podtail collects, so a missed event never loses a container.
	ReconcileInterval time.Duration `mapstructure:"reconcile_interval"`
	// ReconnectBackoff caps the wait between reconnection attempts.
	ReconnectBackoff time.Duration `mapstructure:"reconnect_backoff"`
	// JournalDirs are where the systemd journal is read for containers of the
	// journald log driver (the default on systemd hosts): each directory and
	// its machine-id subdirectories, with files.host_prefix in front.
	JournalDirs []string `mapstructure:"journal_dirs"`
}

// Discovery maps containers to tenants and Loki labels.
type Discovery struct {
	// TenantLabel, AppLabel and VersionLabel name the container labels read
	// for Loki's tenant, application and version labels.
	TenantLabel  string `mapstructure:"tenant_label"`
	AppLabel     string `mapstructure:"app_label"`
	VersionLabel string `mapstructure:"version_label"`
	// RequireTenant skips containers without a tenant label. When false they
	// go to DefaultTenant.
	RequireTenant bool   `mapstructure:"require_tenant"`
	DefaultTenant string `mapstructure:"default_tenant"`
	// ExistingFrom says where to start reading containers that podtail has no
	// position for when it starts: "start" (their first line) or "end" (only
	// what they print from now on). Containers started later are always read
	// from their first line.
	ExistingFrom string `mapstructure:"existing_from"`
}

// Loki is the push target and how podtail batches and retries.
type Loki struct {
	// URL is Loki's base URL; podtail POSTs to URL/loki/api/v1/push.
	URL       string   `mapstructure:"url"`
	BatchSize ByteSize `mapstructure:"batch_size"`
	// BatchWait bounds how long a line waits for its batch to fill: it is
	// most of a new container's time to Loki. 500ms (Promtail: 1s) keeps
	// that under a second, at the cost of up to two pushes a second per
	// tenant that logs a trickle (a busy tenant fills batch_size first).
	BatchWait time.Duration `mapstructure:"batch_wait"`
	Timeout   time.Duration `mapstructure:"timeout"`
	// MinBackoff and MaxBackoff bound the exponential wait between retries of
	// 429s, 5xx and connection errors.
	MinBackoff time.Duration `mapstructure:"min_backoff"`
	MaxBackoff time.Duration `mapstructure:"max_backoff"`
	// MaxRetryTime 0 retries forever (nothing is lost while Loki is away);
	// above 0 a batch is dropped, counted, after retrying that long.
	MaxRetryTime time.Duration `mapstructure:"max_retry_time"`
	// QueueBytes bounds the lines read but not yet acknowledged by Loki, over
	// all tenants. When it is reached, sources stop reading.
	QueueBytes ByteSize `mapstructure:"queue_bytes"`
	// TLS, BasicAuth, BearerToken(File) and Headers secure the connection;
	// see loki.Security. Secrets print as <redacted>.
	TLS             LokiTLS       `mapstructure:"tls"`
	BasicAuth       LokiBasicAuth `mapstructure:"basic_auth"`
	BearerToken     Secret        `mapstructure:"bearer_token"`
	BearerTokenFile string        `mapstructure:"bearer_token_file"`
	// Headers are added to every push; their values may be API keys, so they
	// print as <redacted>. X-Scope-OrgID is refused: the tenant is podtail's.
	Headers map[string]Secret `mapstructure:"headers"`
}

// LokiTLS is loki.tls: the CA bundle Loki's certificate must chain to, the
// client certificate, the expected server name.
type LokiTLS struct {
	CAFile             string `mapstructure:"ca_file"`
	CertFile           string `mapstructure:"cert_file"`
	KeyFile            string `mapstructure:"key_file"`
	ServerName         string `mapstructure:"server_name"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

// LokiBasicAuth is loki.basic_auth.
type LokiBasicAuth struct {
	Username     string `mapstructure:"username"`
	Password     Secret `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
}

// Security is what pkg/loki needs of the connection settings.
func (l Loki) Security() loki.Security {
	h := make(map[string]string, len(l.Headers))
	for k, v := range l.Headers {
		h[k] = string(v)
	}
	return loki.Security{
		TLS: loki.TLS{
			CAFile:             l.TLS.CAFile,
			CertFile:           l.TLS.CertFile,
			KeyFile:            l.TLS.KeyFile,
			ServerName:         l.TLS.ServerName,
			InsecureSkipVerify: l.TLS.InsecureSkipVerify,
		},
		BasicAuth: loki.BasicAuth{
			Username:     l.BasicAuth.Username,
			Password:     string(l.BasicAuth.Password),
			PasswordFile: l.BasicAuth.PasswordFile,
		},
		BearerToken:     string(l.BearerToken),
		BearerTokenFile: l.BearerTokenFile,
		Headers:         h,
	}
}

// Secret is a configuration value that must not be shown (a password, a
// token): fmt, JSON, YAML and zap print it as "<redacted>", or "" when it is
// not set. string(s) is the value.
type Secret string

const redacted = "<redacted>"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// MarshalText masks s in every text encoding.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Server is podtail's own HTTP endpoint: /ready, /healthz, /metrics.
type Server struct {
	Listen string `mapstructure:"listen"`
	// Pprof adds Go's /debug/pprof/ handlers, for profiling (bench/ uses
	// it). Off by default: a profile exposes internals and costs CPU.
	Pprof bool `mapstructure:"pprof"`
}

// Log configures podtail's own logs.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // json or console
}

// Files configures the apps' own log files.
type Files struct {
	// HostPrefix is prepended to host paths that Podman reports (container
	// log files, bind-mount sources) when podtail itself runs in a container
	// with the host's filesystem mounted there, e.g. /host.
	HostPrefix string `mapstructure:"host_prefix"`
	// MountSuffixes: a collected container's bind mount whose source or
	// destination ends with one of these is a log directory (every *.log in
	// it is tailed, and *.log.gz backups not yet read).
	MountSuffixes []string `mapstructure:"mount_suffixes"`
	// PathRegex labels a log directory by its host path (named groups
	// tenant, application, version); tenant is used for static directories
	// only, containers take theirs from their label.
	PathRegex string `mapstructure:"path_regex"`
	// NameRegex labels a file by its name (groups application, version); a
	// version in a file's name wins for its lines.
	NameRegex    string        `mapstructure:"name_regex"`
	MaxOpen      int           `mapstructure:"max_open"`
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// Static directories, for apps not run in containers (globs rescanned
	// every ScanInterval).
	Static       []StaticDir   `mapstructure:"static"`
	ScanInterval time.Duration `mapstructure:"scan_interval"`
}

// Limits bound what one tenant can make podtail ship (pipeline.Limits).
type Limits struct {
	// MaxStreamsPerTenant bounds the Loki streams a tenant has in use (unused
	// for an hour: no longer counted); lines of new streams beyond it are
	// dropped and counted. 0: no bound.
	MaxStreamsPerTenant int `mapstructure:"max_streams_per_tenant"`
	// MaxLabelValueBytes cuts longer label values (at most Loki's 2048).
	MaxLabelValueBytes ByteSize `mapstructure:"max_label_value_bytes"`
	// MaxLineBytes bounds a line, from container output (conmon's parts
	// joined) and files alike; LineTooLong says what happens to a longer
	// one: truncate (with a marker) or drop. Counted either way.
	MaxLineBytes ByteSize `mapstructure:"max_line_bytes"`
	LineTooLong  string   `mapstructure:"line_too_long"`
	// Tenants, when not empty, is the only tenants whose lines are shipped.
	Tenants []string `mapstructure:"tenants"`
}

// StaticDir is a glob of log directories outside containers.
type StaticDir struct {
	Glob string `mapstructure:"glob"`
	// Tenant for every matched directory; empty: path_regex's tenant group.
	Tenant string `mapstructure:"tenant"`
}

// Pipelines lists stages ({type: ..., options}) per kind of source; see
// the README for the stage types.
type Pipelines struct {
	Container []map[string]any `mapstructure:"container"`
	Files     []map[string]any `mapstructure:"files"`
}

// ByteSize is a size in bytes that reads "1MiB", "512KB" or a plain number.
type ByteSize int64

// UnmarshalText parses a human size; units are binary (1KB = 1024).
func (b *ByteSize) UnmarshalText(text []byte) error {
	n, err := units.RAMInBytes(strings.TrimSpace(string(text)))
	if err != nil {
		return fmt.Errorf("not a size (want e.g. 1MiB, 512KB, 1048576): %q", text)
	}
	*b = ByteSize(n)
	return nil
}

// Default returns the configuration used where nothing is said.
func Default() Config {
	return Config{
		Podman: Podman{
			Enabled:           true,
			ReconcileInterval: 10 * time.Second,
			ReconnectBackoff:  5 * time.Second,
			JournalDirs:       []string{"/var/log/journal", "/run/log/journal"},
		},
		Discovery: Discovery{
			TenantLabel:   "tenant",
			AppLabel:      "app",
			VersionLabel:  "version",
			RequireTenant: true,
			ExistingFrom:  "start",
		},
		Loki: Loki{
			URL:        "http://127.0.0.1:3100",
			BatchSize:  1 << 20,
			BatchWait:  500 * time.Millisecond,
			Timeout:    10 * time.Second,
			MinBackoff: 100 * time.Millisecond,
			MaxBackoff: 10 * time.Second,
			QueueBytes: 6 << 20,
			Headers:    map[string]Secret{},
		},
		DataDir:         "/var/lib/podtail",
		Spool:           Spool{Enabled: true},
		ShutdownTimeout: 10 * time.Second,
		Server:          Server{Listen: "127.0.0.1:9080"},
		Log:             Log{Level: "info", Format: "json"},
		Files: Files{
			MountSuffixes: []string{labels.DefaultMountSuffix},
			PathRegex:     labels.DefaultPathRegex,
			NameRegex:     labels.DefaultNameRegex,
			MaxOpen:       1024,
			PollInterval:  250 * time.Millisecond,
			Static:        []StaticDir{},
			ScanInterval:  10 * time.Second,
		},
		Limits: Limits{
			MaxStreamsPerTenant: 1000,
			MaxLabelValueBytes:  1 << 10,
			MaxLineBytes:        pipeline.DefaultMaxLineBytes,
			LineTooLong:         "truncate",
			Tenants:             []string{},
		},
		Pipeline: Pipelines{
			Container: pipeline.ContainerPreset(),
			Files:     pipeline.ZapPreset(),
		},
	}
}

// Load reads the configuration: defaults, then file (if not empty), then
// PODTAIL_* environment variables, then the flags in fs that are set and are
// named after a key (e.g. --loki.url). Unknown keys in the file are errors.
func Load(file string, fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	keys := map[string]bool{}
	for k, val := range flatten(Default()) {
		keys[k] = true
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
		var unknown []error
		for _, k := range v.AllKeys() {
			if !keys[k] && !strings.HasPrefix(k, "loki.headers.") { // header names are free
				if to, ok := movedKeys[k]; ok {
					unknown = append(unknown, fmt.Errorf("%s: moved to %s", k, to))
					continue
				}
				unknown = append(unknown, fmt.Errorf("%s: unknown key%s", k, suggest(k, keys)))
			}
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("config file %s: %w", file, errors.Join(unknown...))
		}
	}
	if fs != nil {
		var bindErr error
		fs.VisitAll(func(f *pflag.Flag) {
			if keys[f.Name] {
				bindErr = errors.Join(bindErr, v.BindPFlag(f.Name, f))
			}
		})
		if bindErr != nil {
			return nil, bindErr
		}
	}

	cfg := Default()
	err := v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		durationHook,
		mapstructure.TextUnmarshallerHookFunc(),
		// A list from the environment or a flag is one string:
		// PODTAIL_LIMITS_TENANTS=a,b.
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return nil, fmt.Errorf("%s%w", where(file), cleanDecodeError(err))
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s%w", where(file), err)
	}
	return &cfg, nil
}

// movedKeys are keys that now have another name.
var movedKeys = map[string]string{
	"files.max_line_bytes": "limits.max_line_bytes (it bounds container output too)",
}

func where(file string) string {
	if file == "" {
		return "config: "
	}
	return "config file " + file + ": "
}

// Validate checks every key and joins all problems, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if s := c.Podman.Socket; s != "" {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "unix" && u.Scheme != "tcp") {
			bad("podman.socket", "%q is not a unix:///path or tcp://host:port URI", s)
		}
	}
	if c.Podman.ReconcileInterval < 100*time.Millisecond {
		bad("podman.reconcile_interval", "%s is below the minimum 100ms", c.Podman.ReconcileInterval)
	}
	for _, d := range c.Podman.JournalDirs {
		if !filepath.IsAbs(d) {
			bad("podman.journal_dirs", "%q is not an absolute path", d)
		}
	}
	if c.Podman.ReconnectBackoff <= 0 {
		bad("podman.reconnect_backoff", "must be positive, got %s", c.Podman.ReconnectBackoff)
	}
	for key, name := range map[string]string{
		"discovery.tenant_label":  c.Discovery.TenantLabel,
		"discovery.app_label":     c.Discovery.AppLabel,
		"discovery.version_label": c.Discovery.VersionLabel,
	} {
		if strings.TrimSpace(name) == "" {
			bad(key, "must name a container label")
		}
	}
	if !c.Discovery.RequireTenant && c.Discovery.DefaultTenant == "" {
		bad("discovery.default_tenant", "must be set when discovery.require_tenant is false")
	}
	if c.Discovery.ExistingFrom != "start" && c.Discovery.ExistingFrom != "end" {
		bad("discovery.existing_from", "%q is not one of start, end", c.Discovery.ExistingFrom)
	}
	if u, err := url.Parse(c.Loki.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("loki.url", "%q is not an http(s)://host[:port] URL", c.Loki.URL)
	}
	if c.Loki.BatchSize <= 0 {
		bad("loki.batch_size", "must be positive")
	}
	if c.Loki.BatchWait <= 0 {
		bad("loki.batch_wait", "must be positive")
	}
	if c.Loki.Timeout <= 0 {
		bad("loki.timeout", "must be positive")
	}
	if c.Loki.MinBackoff <= 0 || c.Loki.MaxBackoff < c.Loki.MinBackoff {
		bad("loki.min_backoff", "must be positive and not above loki.max_backoff (%s, %s)", c.Loki.MinBackoff, c.Loki.MaxBackoff)
	}
	if c.Loki.MaxRetryTime < 0 {
		bad("loki.max_retry_time", "must be 0 (retry forever) or positive")
	}
	if c.Loki.QueueBytes < c.Loki.BatchSize {
		bad("loki.queue_bytes", "%d is below loki.batch_size %d", c.Loki.QueueBytes, c.Loki.BatchSize)
	}
	if u, err := url.Parse(c.Loki.URL); err == nil && u.User != nil {
		bad("loki.url", "%s holds credentials; use loki.basic_auth instead", u.Redacted())
	} else if err == nil && u.Scheme == "http" && c.Loki.TLS != (LokiTLS{}) {
		bad("loki.tls", "set, but loki.url %s is http://; use https:// or drop loki.tls", c.Loki.URL)
	}
	if err := c.Loki.Security().Validate(); err != nil { // reads the files named, so a bad one is caught here
		errs = append(errs, err)
	}
	if c.DataDir == "" {
		bad("data_dir", "must be set: positions live there")
	}
	if _, err := regexp.Compile(c.Files.PathRegex); err != nil {
		bad("files.path_regex", "%v", err)
	}
	if _, err := regexp.Compile(c.Files.NameRegex); err != nil {
		bad("files.name_regex", "%v", err)
	}
	if c.Limits.MaxStreamsPerTenant < 0 {
		bad("limits.max_streams_per_tenant", "must be 0 (no bound) or positive, got %d", c.Limits.MaxStreamsPerTenant)
	}
	if c.Limits.MaxLabelValueBytes < 16 || c.Limits.MaxLabelValueBytes > labels.MaxValueLength {
		bad("limits.max_label_value_bytes", "%d is not within 16..%d (Loki's limit)", c.Limits.MaxLabelValueBytes, labels.MaxValueLength)
	}
	if c.Limits.MaxLineBytes < 1024 {
		bad("limits.max_line_bytes", "%d is below the minimum 1KiB", c.Limits.MaxLineBytes)
	}
	if c.Limits.LineTooLong != "truncate" && c.Limits.LineTooLong != "drop" {
		bad("limits.line_too_long", "%q is not one of truncate, drop", c.Limits.LineTooLong)
	}
	for i, t := range c.Limits.Tenants {
		if err := labels.ValidTenant(t); err != nil {
			bad(fmt.Sprintf("limits.tenants[%d]", i), "%v", err)
		}
	}
	if c.Files.MaxOpen < 1 {
		bad("files.max_open", "must be at least 1")
	}
	if c.Files.PollInterval < 10*time.Millisecond {
		bad("files.poll_interval", "%s is below the minimum 10ms", c.Files.PollInterval)
	}
	if c.Files.ScanInterval < 100*time.Millisecond {
		bad("files.scan_interval", "%s is below the minimum 100ms", c.Files.ScanInterval)
	}
	for i, sd := range c.Files.Static {
		if sd.Glob == "" {
			bad(fmt.Sprintf("files.static[%d].glob", i), "must be set")
		} else if _, err := filepath.Match(sd.Glob, ""); err != nil {
			bad(fmt.Sprintf("files.static[%d].glob", i), "%v", err)
		}
		if sd.Tenant != "" {
			if err := labels.ValidTenant(sd.Tenant); err != nil {
				bad(fmt.Sprintf("files.static[%d].tenant", i), "%v", err)
			}
		}
	}
	if !c.Podman.Enabled && len(c.Files.Static) == 0 {
		bad("podman.enabled", "false with no files.static directories: nothing to collect")
	}
	if ml, stages, err := pipeline.SplitMultiline(c.Pipeline.Container); err != nil {
		bad("pipeline.container", "%v", err)
	} else if ml != nil {
		bad("pipeline.container", "multiline is supported on files only (container output: not yet)")
	} else if _, err := pipeline.Build(stages); err != nil {
		bad("pipeline.container", "%v", err)
	}
	if ml, stages, err := pipeline.SplitMultiline(c.Pipeline.Files); err != nil {
		bad("pipeline.files", "%v", err)
	} else {
		if ml != nil {
			if _, err := pipeline.NewMultilineFromSpec(ml); err != nil {
				bad("pipeline.files", "%v", err)
			}
		}
		if _, err := pipeline.Build(stages); err != nil {
			bad("pipeline.files", "%v", err)
		}
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	if c.MemoryLimit < 0 {
		bad("memory_limit", "must be >= 0 (0: no limit)")
	} else if c.MemoryLimit > 0 && c.Loki.QueueBytes > c.MemoryLimit/2 {
		bad("memory_limit", "%d bytes leaves too little room: loki.queue_bytes (%d) must be at most half of it", c.MemoryLimit, c.Loki.QueueBytes)
	}
	if _, _, err := net.SplitHostPort(c.Server.Listen); c.Server.Listen != "" && err != nil {
		bad("server.listen", "%q is not host:port", c.Server.Listen)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format", "%q is not one of json, console", c.Log.Format)
	}
	return errors.Join(errs...)
}

// Keys lists every configuration key, sorted.
func Keys() []string {
	var out []string
	for _, kv := range Default().Settings() {
		out = append(out, kv.Key)
	}
	return out
}

// Setting is one key and its value.
type Setting struct {
	Key   string
	Value any
}

// Settings lists every key of c with its value, sorted by key.
func (c Config) Settings() []Setting {
	m := flatten(c)
	out := make([]Setting, 0, len(m))
	for k, v := range m {
		out = append(out, Setting{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// flatten turns a Config into dotted keys and plain values (durations as
// strings) so viper knows every key, which AutomaticEnv needs.
func flatten(c Config) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := t.Field(i).Tag.Get("mapstructure")
			key := name
			if prefix != "" {
				key = prefix + "." + name
			}
			f := v.Field(i)
			switch x := f.Interface().(type) {
			case time.Duration:
				out[key] = x.String()
			case ByteSize:
				out[key] = int64(x)
			default:
				if f.Kind() == reflect.Struct {
					walk(key, f)
				} else {
					out[key] = x
				}
			}
		}
	}
	walk("", reflect.ValueOf(c))
	return out
}

// durationHook parses durations like mapstructure's own hook, but keeps the
// offending text in the error, which mapstructure's drops.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	d, err := time.ParseDuration(data.(string))
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration (want e.g. 500ms, 10s, 1m)", data)
	}
	return d, nil
}

// cleanDecodeError strips mapstructure's preamble so the message starts with
// the key: "loki.batch_wait: time: invalid duration ...".
func cleanDecodeError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "\n\n"); i >= 0 {
		msg = msg[i+2:]
	}
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "'") {
			if j := strings.Index(l[1:], "'"); j >= 0 {
				l = l[1:j+1] + ":" + l[j+2:]
			}
		}
		lines = append(lines, l)
	}
	return errors.New(strings.Join(lines, "; "))
}

// suggest names the known key closest to k, for typos.
func suggest(k string, keys map[string]bool) string {
	best, bestD := "", 4
	for known := range keys {
		if d := distance(k, known); d < bestD {
			best, bestD = known, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// distance is the Levenshtein distance, for short config keys.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
