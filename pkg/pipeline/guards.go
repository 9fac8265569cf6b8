package pipeline

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/labels"
)

// The per-tenant guards (config key limits) every Stream applies: Limits,
// its config, and the drop reasons it counts. (The rate limit stage, one
// stream's own, is pkg/pipeline/stage's limit.)

// Defaults of the guards when a Stream has no Limits (unit tests, tools):
// lines are bounded as Loki bounds them by default, label values too.
const (
	DefaultMaxLineBytes = 256 << 10 // Loki's default max_line_size
	// TruncationMarker ends a line cut at the line limit.
	TruncationMarker = "…[truncated by podtail]"
	// streamIdle is how long a stream unused counts against its tenant's
	// max_streams_per_tenant. Loki's ingesters flush an idle stream after
	// chunk_idle_period (30m by default); an hour errs on the side of
	// counting a stream Loki still holds.
	streamIdle = time.Hour
	// admitRefresh is how often a Stream tells Limits that a stream it
	// admitted is still in use (a lock per line would be a lock per line).
	admitRefresh = time.Minute
	// warnEvery bounds podtail's own warnings per tenant and reason.
	warnEvery = time.Minute
)

// Drop reasons counted by the guards, beside the stages' own.
const (
	DropLineTooLong      = "line_too_long"
	DropStreamLimit      = "stream_limit"
	DropTenantNotAllowed = "tenant_not_allowed"
)

// LimitsConfig are the per-tenant guards (config key limits).
type LimitsConfig struct {
	// MaxStreamsPerTenant bounds the Loki streams (label sets) a tenant has
	// in use at once; lines of a new stream beyond it are dropped and
	// counted (reason stream_limit). A stream unused for an hour no longer
	// counts. 0: no bound.
	MaxStreamsPerTenant int
	// MaxLabelValueBytes cuts longer label values (counted); 0: Loki's 2048.
	MaxLabelValueBytes int
	// MaxLineBytes: longer lines are truncated with TruncationMarker, or
	// dropped when DropLongLines; counted either way. 0: 256 KiB.
	MaxLineBytes  int
	DropLongLines bool
	// Tenants, when not empty, is the allow-list: lines of any other tenant
	// are dropped and counted (reason tenant_not_allowed).
	Tenants []string
}

// Limits holds the guards every Stream applies and the per-tenant state they
// need (the streams in use). It is shared by all sources, each of whose
// Streams is given it (StreamConfig.Limits).
type Limits struct {
	cfg     LimitsConfig
	allowed map[string]bool // nil: every tenant
	log     *zap.Logger

	truncated *prometheus.CounterVec // tenant
	labelsCut *prometheus.CounterVec // tenant
	streams   *prometheus.GaugeVec   // tenant

	mu      sync.Mutex
	tenants map[string]*tenantStreams
	warned  map[string]time.Time // tenant + reason -> last warning
}

type tenantStreams struct {
	last  map[string]time.Time // stream key -> last use
	swept time.Time            // last look for idle streams
}

// NewLimits checks cfg and registers the guards' metrics on reg (nil: not
// registered).
func NewLimits(cfg LimitsConfig, reg prometheus.Registerer, log *zap.Logger) (*Limits, error) {
	var errs []error
	if cfg.MaxStreamsPerTenant < 0 {
		errs = append(errs, fmt.Errorf("limits.max_streams_per_tenant: must be 0 (no bound) or positive, got %d", cfg.MaxStreamsPerTenant))
	}
	if cfg.MaxLabelValueBytes == 0 {
		cfg.MaxLabelValueBytes = labels.MaxValueLength
	}
	if cfg.MaxLabelValueBytes < 1 || cfg.MaxLabelValueBytes > labels.MaxValueLength {
		errs = append(errs, fmt.Errorf("limits.max_label_value_bytes: %d is not within 1..%d (Loki's limit)", cfg.MaxLabelValueBytes, labels.MaxValueLength))
	}
	if cfg.MaxLineBytes == 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	if cfg.MaxLineBytes <= len(TruncationMarker) {
		errs = append(errs, fmt.Errorf("limits.max_line_bytes: %d leaves no room for the truncation marker", cfg.MaxLineBytes))
	}
	l := &Limits{cfg: cfg, log: log, tenants: map[string]*tenantStreams{}, warned: map[string]time.Time{}}
	if len(cfg.Tenants) > 0 {
		l.allowed = map[string]bool{}
		for i, t := range cfg.Tenants {
			if err := labels.ValidTenant(t); err != nil {
				errs = append(errs, fmt.Errorf("limits.tenants[%d]: %w", i, err))
			}
			l.allowed[t] = true
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	l.truncated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podtail_pipeline_lines_truncated_total",
		Help: "Lines longer than limits.max_line_bytes, shipped truncated with a marker (container output and files).",
	}, []string{"tenant"})
	l.labelsCut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podtail_pipeline_label_values_cut_total",
		Help: "Label sets with a value cut to limits.max_label_value_bytes (or repaired to valid UTF-8), counted once per stream.",
	}, []string{"tenant"})
	l.streams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podtail_pipeline_streams",
		Help: "Loki streams in use per tenant, counted against limits.max_streams_per_tenant.",
	}, []string{"tenant"})
	if reg != nil {
		reg.MustRegister(l.truncated, l.labelsCut, l.streams)
	}
	return l, nil
}

// Allowed reports whether tenant's lines may be shipped (limits.tenants).
func (l *Limits) Allowed(tenant string) bool {
	return l == nil || l.allowed == nil || l.allowed[tenant]
}

// lineLimit is the longest line shipped as is, and whether longer ones are
// dropped (else truncated).
func (l *Limits) lineLimit() (int, bool) {
	if l == nil {
		return DefaultMaxLineBytes, false
	}
	return l.cfg.MaxLineBytes, l.cfg.DropLongLines
}

// cutLine is the line-length rule, the one place it lives: a line over
// the limit is truncated with TruncationMarker and counted, or, with
// DropLongLines, dropped (keep false; the caller counts the drop).
func (l *Limits) cutLine(tenant, line string) (string, bool) {
	max, drop := l.lineLimit()
	if len(line) <= max {
		return line, true
	}
	if drop {
		return line, false // as it was: a tap shows it dropped
	}
	l.countTruncated(tenant)
	return truncateLine(line, max), true
}

func (l *Limits) maxLabelValue() int {
	if l == nil {
		return labels.MaxValueLength
	}
	return l.cfg.MaxLabelValueBytes
}

// admit reports whether key may be used as one more stream of tenant, and
// records its use.
func (l *Limits) admit(tenant, key string, now time.Time) bool {
	if l == nil || l.cfg.MaxStreamsPerTenant == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.tenants[tenant]
	if ts == nil {
		ts = &tenantStreams{last: map[string]time.Time{}}
		l.tenants[tenant] = ts
	}
	if _, ok := ts.last[key]; ok {
		ts.last[key] = now
		return true
	}
	// Full: forget streams idle for streamIdle, at most once a second so a
	// tenant at its bound does not cost a walk of its streams per line.
	if len(ts.last) >= l.cfg.MaxStreamsPerTenant && now.Sub(ts.swept) >= time.Second {
		ts.swept = now
		for k, t := range ts.last {
			if now.Sub(t) >= streamIdle {
				delete(ts.last, k)
			}
		}
	}
	if len(ts.last) >= l.cfg.MaxStreamsPerTenant {
		return false
	}
	ts.last[key] = now
	l.streams.WithLabelValues(tenant).Set(float64(len(ts.last)))
	return true
}

// warn logs msg for tenant and reason at most once a minute.
func (l *Limits) warn(tenant, reason, msg string, fields ...zap.Field) {
	if l == nil || l.log == nil {
		return
	}
	now := time.Now()
	k := tenant + "\x00" + reason
	l.mu.Lock()
	last, ok := l.warned[k]
	if !ok || now.Sub(last) >= warnEvery {
		l.warned[k] = now
	}
	l.mu.Unlock()
	if !ok || now.Sub(last) >= warnEvery {
		l.log.Warn(msg, append(fields, zap.String("tenant", tenant), zap.String("reason", reason))...)
	}
}

func (l *Limits) countTruncated(tenant string) {
	if l != nil {
		l.truncated.WithLabelValues(tenant).Inc()
	}
}

func (l *Limits) countLabelsCut(tenant string) {
	if l != nil {
		l.labelsCut.WithLabelValues(tenant).Inc()
	}
}

// truncateLine cuts line so that, with TruncationMarker appended, it is at
// most max bytes, never inside a UTF-8 character.
func truncateLine(line string, max int) string {
	cut := max - len(TruncationMarker)
	if cut < 0 {
		cut = 0
	}
	if cut >= len(line) {
		return line + TruncationMarker
	}
	// Back to the start of the character cut through; invalid UTF-8 (no
	// start within a character's length) is cut where it is.
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(line[cut]); i++ {
		cut--
	}
	return line[:cut] + TruncationMarker
}
