package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline/stage"
)

// Validate checks every key and joins all problems, each naming its key.
func (c *Config) Validate() error {
	var p problems
	c.validatePodman(&p)
	c.validateDiscovery(&p)
	c.validateSelect(&p)
	c.validateStaticLabels(&p)
	c.validateLokiPush(&p)
	c.validateLokiSecurity(&p)
	c.validateDataDir(&p)
	c.validateFileRules(&p)
	c.validateLimits(&p)
	c.validateFiles(&p)
	c.validateFileNames(&p)
	c.validateStaticDirs(&p)
	c.validateSomethingToCollect(&p)
	c.validateContainerPipeline(&p)
	c.validateFilesPipeline(&p)
	c.validateApps(&p)
	c.validateShutdownTimeout(&p)
	c.validateMemoryLimit(&p)
	c.validateServer(&p)
	c.validateLog(&p)
	return errors.Join(p...)
}

// problems are what Validate found, in the order found.
type problems []error

// bad adds a problem with key: "key: " and the formatted message.
func (p *problems) bad(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
}

func (c *Config) validatePodman(p *problems) {
	if s := c.Podman.Socket; s != "" {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "unix" && u.Scheme != "tcp") {
			p.bad("podman.socket", "%q is not a unix:///path or tcp://host:port URI", s)
		}
	}
	if c.Podman.ReconcileInterval < 100*time.Millisecond {
		p.bad("podman.reconcile_interval", "%s is below the minimum 100ms", c.Podman.ReconcileInterval)
	}
	for _, d := range c.Podman.JournalDirs {
		if !filepath.IsAbs(d) {
			p.bad("podman.journal_dirs", "%q is not an absolute path", d)
		}
	}
	if c.Podman.ReconnectBackoff <= 0 {
		p.bad("podman.reconnect_backoff", "must be positive, got %s", c.Podman.ReconnectBackoff)
	}
}

func (c *Config) validateDiscovery(p *problems) {
	for key, name := range map[string]string{
		"discovery.tenant_label":  c.Discovery.TenantLabel,
		"discovery.app_label":     c.Discovery.AppLabel,
		"discovery.version_label": c.Discovery.VersionLabel,
	} {
		if strings.TrimSpace(name) == "" {
			p.bad(key, "must name a container label")
		}
	}
	if !c.Discovery.RequireTenant && c.Discovery.DefaultTenant == "" {
		p.bad("discovery.default_tenant", "must be set when discovery.require_tenant is false")
	}
	if c.Discovery.ExistingFrom != "start" && c.Discovery.ExistingFrom != "end" {
		p.bad("discovery.existing_from", "%q is not one of start, end", c.Discovery.ExistingFrom)
	}
}

// validateLokiPush checks where and how lines are pushed: the URL, batching,
// retries and the queue.
func (c *Config) validateLokiPush(p *problems) {
	if u, err := url.Parse(c.Loki.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.bad("loki.url", "%q is not an http(s)://host[:port] URL", c.Loki.URL)
	}
	if c.Loki.BatchSize <= 0 {
		p.bad("loki.batch_size", "must be positive")
	}
	if c.Loki.BatchWait <= 0 {
		p.bad("loki.batch_wait", "must be positive")
	}
	if c.Loki.Timeout <= 0 {
		p.bad("loki.timeout", "must be positive")
	}
	if c.Loki.MinBackoff <= 0 || c.Loki.MaxBackoff < c.Loki.MinBackoff {
		p.bad("loki.min_backoff", "must be positive and not above loki.max_backoff (%s, %s)", c.Loki.MinBackoff, c.Loki.MaxBackoff)
	}
	if c.Loki.MaxRetryTime < 0 {
		p.bad("loki.max_retry_time", "must be 0 (retry forever) or positive")
	}
	if c.Loki.QueueBytes < c.Loki.BatchSize {
		p.bad("loki.queue_bytes", "%d is below loki.batch_size %d", c.Loki.QueueBytes, c.Loki.BatchSize)
	}
}

// validateLokiSecurity checks the connection's credentials and TLS.
func (c *Config) validateLokiSecurity(p *problems) {
	if u, err := url.Parse(c.Loki.URL); err == nil && u.User != nil {
		p.bad("loki.url", "%s holds credentials; use loki.basic_auth instead", u.Redacted())
	} else if err == nil && u.Scheme == "http" && c.Loki.TLS != (LokiTLS{}) {
		p.bad("loki.tls", "set, but loki.url %s is http://; use https:// or drop loki.tls", c.Loki.URL)
	}
	for i, ta := range c.Loki.TenantAuth {
		if ta.Tenant == "" {
			continue // Validate below says so
		}
		if err := labels.ValidTenant(ta.Tenant); err != nil {
			p.bad(fmt.Sprintf("loki.tenant_auth[%d].tenant", i), "%v", err)
		}
	}
	if err := c.Loki.Security().Validate(); err != nil { // reads the files named, so a bad one is caught here
		*p = append(*p, err)
	}
}

func (c *Config) validateDataDir(p *problems) {
	if c.DataDir == "" {
		p.bad("data_dir", "must be set: positions live there")
	}
}

// validateFileRules checks the regexes that label log directories and files.
func (c *Config) validateFileRules(p *problems) {
	if _, err := regexp.Compile(c.Files.PathRegex); err != nil {
		p.bad("files.path_regex", "%v", err)
	}
	if _, err := regexp.Compile(c.Files.NameRegex); err != nil {
		p.bad("files.name_regex", "%v", err)
	}
}

func (c *Config) validateLimits(p *problems) {
	if c.Limits.MaxStreamsPerTenant < 0 {
		p.bad("limits.max_streams_per_tenant", "must be 0 (no bound) or positive, got %d", c.Limits.MaxStreamsPerTenant)
	}
	if c.Limits.MaxLabelValueBytes < 16 || c.Limits.MaxLabelValueBytes > labels.MaxValueLength {
		p.bad("limits.max_label_value_bytes", "%d is not within 16..%d (Loki's limit)", c.Limits.MaxLabelValueBytes, labels.MaxValueLength)
	}
	if c.Limits.MaxLineBytes < 1024 {
		p.bad("limits.max_line_bytes", "%d is below the minimum 1KiB", c.Limits.MaxLineBytes)
	}
	if c.Limits.LineTooLong != "truncate" && c.Limits.LineTooLong != "drop" {
		p.bad("limits.line_too_long", "%q is not one of truncate, drop", c.Limits.LineTooLong)
	}
	for i, t := range c.Limits.Tenants {
		if err := labels.ValidTenant(t); err != nil {
			p.bad(fmt.Sprintf("limits.tenants[%d]", i), "%v", err)
		}
	}
}

// validateFiles checks how files are opened, polled and rescanned.
func (c *Config) validateFiles(p *problems) {
	if c.Files.MaxOpen < 1 {
		p.bad("files.max_open", "must be at least 1")
	}
	if c.Files.PollInterval < 10*time.Millisecond {
		p.bad("files.poll_interval", "%s is below the minimum 10ms", c.Files.PollInterval)
	}
	if c.Files.ScanInterval < 100*time.Millisecond {
		p.bad("files.scan_interval", "%s is below the minimum 100ms", c.Files.ScanInterval)
	}
}

func (c *Config) validateStaticDirs(p *problems) {
	for i, sd := range c.Files.Static {
		if sd.Glob == "" {
			p.bad(fmt.Sprintf("files.static[%d].glob", i), "must be set")
		} else if _, err := filepath.Match(sd.Glob, ""); err != nil {
			p.bad(fmt.Sprintf("files.static[%d].glob", i), "%v", err)
		}
		if sd.Tenant != "" {
			if err := labels.ValidTenant(sd.Tenant); err != nil {
				p.bad(fmt.Sprintf("files.static[%d].tenant", i), "%v", err)
			}
		}
	}
}

// validateSomethingToCollect refuses a configuration with neither Podman nor
// static directories.
func (c *Config) validateSomethingToCollect(p *problems) {
	if !c.Podman.Enabled && len(c.Files.Static) == 0 {
		p.bad("podman.enabled", "false with no files.static directories: nothing to collect")
	}
}

func (c *Config) validateContainerPipeline(p *problems) {
	validateStages(p, "pipeline.container", c.Pipeline.Container)
}

func (c *Config) validateFilesPipeline(p *problems) {
	validateStages(p, "pipeline.files", c.Pipeline.Files)
}

// validateStages checks a list of stages: a multiline stage (first) and the
// rest. Container output is joined per stream (stdout, stderr).
func validateStages(p *problems, key string, specs []map[string]any) {
	ml, stages, err := stage.SplitMultiline(specs)
	if err != nil {
		p.bad(key, "%v", err)
		return
	}
	if ml != nil {
		if _, err := stage.NewMultilineFromSpec(ml); err != nil {
			p.bad(key, "%v", err)
		}
	}
	if _, err := stage.Build(stages); err != nil {
		p.bad(key, "%v", err)
	}
}

func (c *Config) validateShutdownTimeout(p *problems) {
	if c.ShutdownTimeout <= 0 {
		p.bad("shutdown_timeout", "must be positive")
	}
}

func (c *Config) validateMemoryLimit(p *problems) {
	if c.MemoryLimit < 0 {
		p.bad("memory_limit", "must be >= 0 (0: no limit)")
	} else if c.MemoryLimit > 0 && c.Loki.QueueBytes > c.MemoryLimit/2 {
		p.bad("memory_limit", "%d bytes leaves too little room: loki.queue_bytes (%d) must be at most half of it", c.MemoryLimit, c.Loki.QueueBytes)
	}
}

func (c *Config) validateServer(p *problems) {
	if _, _, err := net.SplitHostPort(c.Server.Listen); c.Server.Listen != "" && err != nil {
		p.bad("server.listen", "%q is not host:port", c.Server.Listen)
	}
}

func (c *Config) validateLog(p *problems) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		p.bad("log.format", "%q is not one of json, console", c.Log.Format)
	}
}
