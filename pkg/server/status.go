package server

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync/atomic"
	"time"
)

// The status page (server.status): /status shows, and /status.json returns
// for scripts (and `podtail targets --from`), every source podtail reads
// with its labels, state and lag, every tenant's queue, push latency and
// refusals, and whether Loki answers. Both take ?tenant= and ?app= to show
// one tenant's or one application's part. The page is rendered here (no
// external assets: it works offline), and refreshes itself.

// StatusReport is the status: what /status.json returns.
type StatusReport struct {
	Time    time.Time      `json:"time"`
	Version string         `json:"version,omitempty"`
	Host    string         `json:"host,omitempty"`
	Loki    LokiStatus     `json:"loki"`
	Tenants []TenantStatus `json:"tenants"`
	Sources []SourceStatus `json:"sources"`
	// Filter is what the report was narrowed to (?tenant=, ?app=).
	Filter Filter `json:"filter,omitzero"`
}

// Filter narrows a report to one tenant and/or one application.
type Filter struct {
	Tenant string `json:"tenant,omitempty"`
	App    string `json:"application,omitempty"`
}

// LokiStatus is delivery as a whole.
type LokiStatus struct {
	URL string `json:"url"`
	// Reachable: the last request to Loki got an HTTP answer (any status);
	// null until one was made.
	Reachable   *bool      `json:"reachable"`
	Checked     *time.Time `json:"checked,omitempty"`
	LastContact *time.Time `json:"last_contact,omitempty"`
	// Error is what the last request that got no answer met, at ErrorAt.
	Error           string     `json:"error,omitempty"`
	ErrorAt         *time.Time `json:"error_at,omitempty"`
	QueuedBytes     int64      `json:"queued_bytes"`
	QueueLimitBytes int64      `json:"queue_limit_bytes"`
}

// TenantStatus is one tenant's delivery.
type TenantStatus struct {
	Tenant string `json:"tenant"`
	// Allowed is false for a tenant outside limits.tenants: its lines are
	// dropped.
	Allowed              bool        `json:"allowed"`
	Sources              int         `json:"sources"`
	QueuedBytes          int64       `json:"queued_bytes"`
	OldestUnackedSeconds float64     `json:"oldest_unacked_seconds"`
	Pushes               int64       `json:"pushes"`
	PushLatency          PushLatency `json:"push_latency_seconds"`
	EntriesSent          int64       `json:"entries_sent"`
	// RefusedPushes counts the pushes Loki did not take, by HTTP status or
	// "network" (429 and 5xx are retried; other 4xx are final).
	RefusedPushes map[string]int64 `json:"refused_pushes,omitempty"`
	// DroppedEntries counts the entries given up, by reason: Loki's
	// refusals (too_old, line_too_long, rejected_401, ...) and podtail's
	// own limits (tenant_not_allowed, stream_limit).
	DroppedEntries map[string]int64 `json:"dropped_entries,omitempty"`
	LastOK         *time.Time       `json:"last_ok,omitempty"`
	LastError      string           `json:"last_error,omitempty"`
	LastErrorAt    *time.Time       `json:"last_error_at,omitempty"`
	// Failing: the tenant's last push failed, and none succeeded since.
	Failing bool `json:"failing"`
}

// PushLatency is how long Loki took to answer the tenant's recent pushes.
type PushLatency struct {
	Last float64 `json:"last"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
}

// SourceStatus is one source: a container's output or a log file.
type SourceStatus struct {
	Key         string `json:"key"`
	Kind        string `json:"kind"` // container, file, directory
	Container   string `json:"container,omitempty"`
	ID          string `json:"id,omitempty"`
	Path        string `json:"path"`
	Tenant      string `json:"tenant"`
	Application string `json:"application"`
	Version     string `json:"version"`
	Stream      string `json:"stream"`
	LogDriver   string `json:"log_driver,omitempty"`
	// State: reading, waiting, draining, done, failed.
	State      string  `json:"state"`
	BytesRead  int64   `json:"bytes_read"`
	BytesAcked int64   `json:"bytes_acked"`
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// LastError is what stopped the source, why its lines are not shipped,
	// or what Loki answers its tenant's pushes while they fail.
	LastError string     `json:"last_error,omitempty"`
	Since     *time.Time `json:"since,omitempty"`
}

// StatusFunc makes a report.
type StatusFunc func(ctx context.Context) (*StatusReport, error)

// StatusProvider hands the server the function that makes reports, once
// there is one: podtail starts serving before its sources exist. Until Set,
// the status answers 503.
type StatusProvider struct{ fn atomic.Pointer[StatusFunc] }

// Set makes f the report's maker (nil: none again).
func (p *StatusProvider) Set(f StatusFunc) {
	if f == nil {
		p.fn.Store(nil)
		return
	}
	p.fn.Store(&f)
}

func (p *StatusProvider) report(ctx context.Context) (*StatusReport, error) {
	f := p.fn.Load()
	if f == nil {
		return nil, errStarting
	}
	return (*f)(ctx)
}

type statusError string

func (e statusError) Error() string { return string(e) }

const errStarting = statusError("podtail is starting: no sources yet")

// WithStatus serves /status and /status.json from p, when p is not nil
// (server.status).
func WithStatus(p *StatusProvider) Option {
	return func(mux *http.ServeMux) {
		if p == nil {
			return
		}
		mux.HandleFunc("/status.json", p.serveJSON)
		mux.HandleFunc("/status", p.serveHTML)
		mux.Handle("/status/", http.StripPrefix("/status/", assetHandler()))
	}
}

// filterOf reads ?tenant= and ?app=.
func filterOf(r *http.Request) Filter {
	q := r.URL.Query()
	return Filter{Tenant: q.Get("tenant"), App: q.Get("app")}
}

func (p *StatusProvider) serveJSON(w http.ResponseWriter, r *http.Request) {
	rep, err := p.report(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	out := rep.Narrow(filterOf(r))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

// Narrow returns the report with only f's tenant and application: the
// sources of both, and the tenants that have such a source (or are f's
// tenant).
func (rep *StatusReport) Narrow(f Filter) *StatusReport {
	out := *rep
	out.Filter = f
	if f == (Filter{}) {
		return &out
	}
	out.Sources = nil
	has := map[string]bool{}
	for _, s := range rep.Sources {
		if f.match(s) {
			out.Sources = append(out.Sources, s)
			has[s.Tenant] = true
		}
	}
	out.Tenants = nil
	for _, t := range rep.Tenants {
		if (f.Tenant == "" || t.Tenant == f.Tenant) && (f.App == "" || has[t.Tenant]) {
			out.Tenants = append(out.Tenants, t)
		}
	}
	return &out
}

func (f Filter) match(s SourceStatus) bool {
	return (f.Tenant == "" || s.Tenant == f.Tenant) && (f.App == "" || s.Application == f.App)
}

// choices are the tenants and applications a filter can choose from: all
// of the report's, and with a tenant chosen, the applications of its
// sources.
func (rep *StatusReport) choices(f Filter) (tenants, apps []string) {
	for _, t := range rep.Tenants {
		tenants = append(tenants, t.Tenant)
	}
	for _, s := range rep.Sources {
		tenants = append(tenants, s.Tenant)
		if f.Tenant == "" || s.Tenant == f.Tenant {
			apps = append(apps, s.Application)
		}
	}
	// A filter naming what is not there (any more) stays selectable.
	if f.Tenant != "" {
		tenants = append(tenants, f.Tenant)
	}
	if f.App != "" {
		apps = append(apps, f.App)
	}
	slices.Sort(tenants)
	slices.Sort(apps)
	return slices.Compact(tenants), slices.DeleteFunc(slices.Compact(apps), func(a string) bool { return a == "" })
}
