// Package config is podtail's one typed configuration: defaults, loading from
// a YAML file, PODTAIL_* environment variables and command-line flags (in
// rising precedence) through viper, and validation that names every bad key.
package config

import (
	"time"

	"github.com/podtail/podtail/pkg/loki"
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
	// StaticLabels are added to every stream podtail ships (e.g. host,
	// cluster), so that several hosts shipping into one Loki can be told
	// apart. They cannot name tenant, application, version or stream.
	StaticLabels map[string]string `mapstructure:"static_labels"`
	// StructuredMetadata names the facts about a line's source attached to
	// every entry as Loki structured metadata (not labels: their values are
	// many): container (its name), image, pod, host (this host's name).
	StructuredMetadata []string `mapstructure:"source_metadata"`
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
	// PodLabels: a container in a pod whose own labels lack the tenant,
	// app or version label takes the pod's (podman kube play, pods created
	// with --label).
	PodLabels bool `mapstructure:"pod_labels"`
	// Select keeps or drops containers by their name, image, pod or labels,
	// in order, as Prometheus' relabel keep and drop actions do: a
	// container is collected only if no rule drops it (see SelectRule).
	Select []SelectRule `mapstructure:"select"`
}

// SelectRule is one keep or drop rule of discovery.select. Action keep
// drops the containers whose Source does not match Regex; drop drops those
// whose Source matches. Regex is anchored at both ends, as Prometheus'.
type SelectRule struct {
	Action string `mapstructure:"action" yaml:"action"` // keep or drop
	// Source is what the regex is matched against: name, image, pod, or
	// label:<name> (a container label; empty when absent).
	Source string `mapstructure:"source" yaml:"source"`
	Regex  string `mapstructure:"regex" yaml:"regex"`
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
	// TenantAuth gives tenants credentials of their own, sent instead of
	// BasicAuth or BearerToken(File) with that tenant's pushes and queries:
	// for a gateway that maps each credential to one X-Scope-OrgID. A list,
	// not a map keyed by tenant: configuration keys lose their case, tenants
	// do not.
	TenantAuth []LokiTenantAuth `mapstructure:"tenant_auth"`
}

// LokiTenantAuth is one entry of loki.tenant_auth: a tenant and its basic
// auth or bearer token.
type LokiTenantAuth struct {
	Tenant          string        `mapstructure:"tenant" yaml:"tenant"`
	BasicAuth       LokiBasicAuth `mapstructure:"basic_auth" yaml:"basic_auth,omitempty"`
	BearerToken     Secret        `mapstructure:"bearer_token" yaml:"bearer_token,omitempty"`
	BearerTokenFile string        `mapstructure:"bearer_token_file" yaml:"bearer_token_file,omitempty"`
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
	Username     string `mapstructure:"username" yaml:"username,omitempty"`
	Password     Secret `mapstructure:"password" yaml:"password,omitempty"`
	PasswordFile string `mapstructure:"password_file" yaml:"password_file,omitempty"`
}

// Security is what pkg/loki needs of the connection settings.
func (l Loki) Security() loki.Security {
	h := make(map[string]string, len(l.Headers))
	for k, v := range l.Headers {
		h[k] = string(v)
	}
	var ta []loki.TenantAuth
	for _, t := range l.TenantAuth {
		ta = append(ta, loki.TenantAuth{
			Tenant:          t.Tenant,
			BasicAuth:       loki.BasicAuth{Username: t.BasicAuth.Username, Password: string(t.BasicAuth.Password), PasswordFile: t.BasicAuth.PasswordFile},
			BearerToken:     string(t.BearerToken),
			BearerTokenFile: t.BearerTokenFile,
		})
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
		TenantAuth:      ta,
	}
}

// Server is podtail's own HTTP endpoint: /ready, /healthz, /metrics.
type Server struct {
	Listen string `mapstructure:"listen"`
	// Pprof adds Go's /debug/pprof/ handlers, for profiling (bench/ uses
	// it). Off by default: a profile exposes internals and costs CPU.
	Pprof bool `mapstructure:"pprof"`
	// Status serves the status page (/status, and /status.json for
	// scripts and podtail targets --from). Off by default: it shows
	// container names, tenants and paths to whoever reaches the address.
	Status bool `mapstructure:"status"`
	// Tap serves /tap, which streams the entries passing through the
	// pipeline to podtail tap. Off by default: it shows log content to
	// whoever reaches the address. While nobody taps, it costs each line
	// one atomic load.
	Tap bool `mapstructure:"tap"`
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
	NameRegex string `mapstructure:"name_regex"`
	// MountTypes are the kinds of container mounts looked at for log
	// directories: bind (a host directory) and volume (a named volume,
	// read at the host path Podman keeps it in).
	MountTypes []string `mapstructure:"mount_types"`
	// Include and Exclude are shell globs over file names in a log
	// directory: a file is read if its name matches an include glob and no
	// exclude glob. Rotated copies of an included file are read too:
	// name.1, name.2.gz, name-20261206(.gz) (logrotate, with or without
	// dateext), name.gz.
	Include      []string      `mapstructure:"include"`
	Exclude      []string      `mapstructure:"exclude"`
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
	Glob string `mapstructure:"glob" yaml:"glob"`
	// Tenant for every matched directory; empty: path_regex's tenant group.
	Tenant string `mapstructure:"tenant" yaml:"tenant"`
}

// Pipelines lists stages ({type: ..., options}) per kind of source; see
// the README for the stage types.
type Pipelines struct {
	Container []map[string]any `mapstructure:"container"`
	Files     []map[string]any `mapstructure:"files"`
	// Apps are pipelines chosen per app: the first whose Match fits a
	// source is used for it, and Container and Files above are the default
	// when none does.
	Apps []AppPipeline `mapstructure:"apps"`
}

// AppPipeline is one entry of pipeline.apps: the stages for the sources
// its Match selects. An entry without a list for a kind of source (no
// container or no files key) is passed over for that kind, so later
// entries, and the default last, still apply to it; an empty list present
// means no stages.
type AppPipeline struct {
	Match     AppMatch         `mapstructure:"match"`
	Container []map[string]any `mapstructure:"container"`
	Files     []map[string]any `mapstructure:"files"`
}

// MarshalYAML writes a list only when present: absent and empty differ
// (passed over for that kind, or no stages).
func (a AppPipeline) MarshalYAML() (any, error) {
	m := map[string]any{"match": a.Match}
	if a.Container != nil {
		m["container"] = a.Container
	}
	if a.Files != nil {
		m["files"] = a.Files
	}
	return m, nil
}

// AppMatch selects sources by regexes (anchored) over their tenant,
// application, version and stream labels and their container's labels;
// an empty field matches anything, and every field given must match.
type AppMatch struct {
	Tenant      string            `mapstructure:"tenant" yaml:"tenant"`
	Application string            `mapstructure:"application" yaml:"application"`
	Version     string            `mapstructure:"version" yaml:"version"`
	Stream      string            `mapstructure:"stream" yaml:"stream"` // stdout, stderr or file
	Labels      map[string]string `mapstructure:"labels" yaml:"labels"`
}
