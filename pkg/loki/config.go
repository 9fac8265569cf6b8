package loki

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// pushPath is where Loki's push API lives under the base URL.
const pushPath = "/loki/api/v1/push"

// Config is the delivery layer's configuration. Zero fields take the defaults
// noted on each; New applies them before validating.
type Config struct {
	// URL is Loki's base URL, e.g. http://127.0.0.1:3100. Pushes go to
	// URL + /loki/api/v1/push; a URL that already ends in that path is used
	// as is.
	URL string
	// BatchSize is how many bytes (line + structured metadata) a tenant's
	// batch may hold before it is sent. Default 1 MiB.
	BatchSize int
	// BatchWait is the longest a non-empty batch waits for more entries
	// before it is sent. Default 1s.
	BatchWait time.Duration
	// Timeout bounds one HTTP request. Default 10s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a batch.
	// Defaults 100ms and 10s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxRetryTime is how long a batch is retried before it is dropped with
	// reason "retries_exhausted". 0, the default, retries forever: a down Loki
	// then stalls the sources through backpressure instead of losing lines.
	MaxRetryTime time.Duration
	// QueueBytes bounds, over all tenants, the bytes accepted by Consume but
	// not yet acknowledged or dropped: each entry's line and metadata plus a
	// fixed overhead for what carries it (entryOverhead), so that the bound
	// is one on memory. Default 6 MiB: ten busy tenants push 0.6 MiB
	// batches rather than 1 MiB, and more only holds lines that can wait on
	// disk. The queue fills to its bound whenever Loki is slower than the
	// files, so it is that much resident: 8 MiB cost 1.7-2 MiB more peak
	// RSS over 1,000 files than 6 for ~5 % less CPU, 16 MiB 14-18 MiB more
	// for 3-4 % less again, 64 MiB ~90 MiB more over 100 files.
	QueueBytes int64
	// UserAgent is sent with every push. Default "podtail".
	UserAgent string
	// Security is TLS, credentials and extra headers for the connection to
	// Loki; the zero value is plain Go defaults (system roots, no
	// credentials).
	Security Security
}

// Defaults.
const (
	DefaultBatchSize  = 1 << 20
	DefaultBatchWait  = time.Second
	DefaultTimeout    = 10 * time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	DefaultQueueBytes = 6 << 20
	DefaultUserAgent  = "podtail"
)

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	return c
}

// Validate reports every problem of c at once, each naming its key. It checks
// c as given; New fills in defaults first, so zero values pass there.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("loki.url: must be set"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("loki.url: %w", err))
	} else if u.Scheme != "http" && u.Scheme != "https" {
		errs = append(errs, fmt.Errorf("loki.url: scheme must be http or https, got %q", u.Scheme))
	} else if u.Host == "" {
		errs = append(errs, fmt.Errorf("loki.url: %q has no host", c.URL))
	} else if u.User != nil {
		// The URL is logged and quoted in errors; credentials have keys of
		// their own that never are.
		errs = append(errs, fmt.Errorf("loki.url: %s holds credentials; use loki.basic_auth instead", u.Redacted()))
	} else if u.Scheme == "http" && c.Security.TLS.tlsSet() {
		errs = append(errs, fmt.Errorf("loki.tls: set, but loki.url %s is http://; use https:// or drop loki.tls", c.URL))
	}
	positive := func(key string, ok bool, v any) {
		if !ok {
			errs = append(errs, fmt.Errorf("loki.%s: must be > 0, got %v", key, v))
		}
	}
	positive("batch_size", c.BatchSize > 0, c.BatchSize)
	positive("batch_wait", c.BatchWait > 0, c.BatchWait)
	positive("timeout", c.Timeout > 0, c.Timeout)
	positive("min_backoff", c.MinBackoff > 0, c.MinBackoff)
	positive("max_backoff", c.MaxBackoff > 0, c.MaxBackoff)
	positive("queue_bytes", c.QueueBytes > 0, c.QueueBytes)
	if c.MinBackoff > 0 && c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		errs = append(errs, fmt.Errorf("loki.max_backoff: %v is less than loki.min_backoff %v", c.MaxBackoff, c.MinBackoff))
	}
	if c.MaxRetryTime < 0 {
		errs = append(errs, fmt.Errorf("loki.max_retry_time: must be >= 0 (0 retries forever), got %v", c.MaxRetryTime))
	}
	if err := c.Security.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pushURL is where batches are POSTed. c.URL must have been validated.
func (c Config) pushURL() string {
	u, _ := url.Parse(c.URL)
	p := strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(p, pushPath) {
		p += pushPath
	}
	u.Path, u.RawPath = p, ""
	return u.String()
}
