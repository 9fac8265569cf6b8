package loki

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The status page's view of delivery (Client.Stats): per tenant what is
// queued, how long Loki takes to answer, what it refused and why; and
// whether Loki answers at all. The hooks (post, drop) record a push's
// outcome under a lock of their own, once per push: nothing per entry.

// latencyWindow is how many of a tenant's last pushes its p50 and p99 are
// taken over.
const latencyWindow = 128

// Stats is a snapshot of delivery, for the status page.
type Stats struct {
	URL string // the push URL
	// Reachable: the last request to Loki (a push, or Probe) got an HTTP
	// answer, whatever its status. Unknown (false, with Checked zero)
	// until a request was made.
	Reachable bool
	// Checked is when the last request to Loki ended; LastContact when
	// Loki last answered; Error what the last request that got no answer
	// met (kept after Loki answers again, with ErrorAt).
	Checked, LastContact time.Time
	Error                string
	ErrorAt              time.Time
	QueuedBytes          int64 // over all tenants
	QueueLimit           int64 // loki.queue_bytes
	Tenants              []TenantStats
}

// TenantStats is one tenant's delivery.
type TenantStats struct {
	Tenant      string
	QueuedBytes int64
	// OldestUnacked is how long the tenant's oldest entry accepted and not
	// yet acknowledged or dropped has waited (0: none).
	OldestUnacked time.Duration
	// Pushes counts the pushes Loki answered (any status); LastLatency,
	// P50 and P99 are over the last latencyWindow of them.
	Pushes                int64
	LastLatency, P50, P99 time.Duration
	EntriesSent           int64
	// Refused counts the pushes that failed, by HTTP status or "network"
	// (429 and 5xx are retried, other 4xx are final); Dropped the entries
	// given up, by reason (too_old, line_too_long, rejected_401,
	// retries_exhausted...).
	Refused map[string]int64
	Dropped map[string]int64
	// LastOK is when Loki last acknowledged a push; LastError the last
	// failure (its status and Loki's answer) and LastErrorAt its time.
	// Failing: the last push attempt failed (no success since).
	LastOK      time.Time
	LastError   string
	LastErrorAt time.Time
	Failing     bool
}

// book is what the hooks record.
type book struct {
	mu      sync.Mutex
	tenants map[string]*tenantBook
	// Loki as a whole.
	checked, contact, errAt time.Time
	reachable               bool
	err                     string
}

type tenantBook struct {
	pushes      int64
	lat         [latencyWindow]time.Duration
	sent        int64
	refused     map[string]int64
	dropped     map[string]int64
	lastOK      time.Time
	lastErr     string
	lastErrAt   time.Time
	failing     bool
	lastLatency time.Duration
}

func (b *book) tenant(id string) *tenantBook {
	if b.tenants == nil {
		b.tenants = map[string]*tenantBook{}
	}
	t := b.tenants[id]
	if t == nil {
		t = &tenantBook{refused: map[string]int64{}, dropped: map[string]int64{}}
		b.tenants[id] = t
	}
	return t
}

// answered records a request Loki answered (or not: status 0, err).
func (b *book) answered(now time.Time, status int, err error) {
	b.checked = now
	if status == 0 {
		b.reachable, b.err, b.errAt = false, errText(err), now
		return
	}
	b.reachable, b.contact = true, now
}

// pushed records one push attempt's outcome: status 0 when no answer came
// (err says why), the answer's status otherwise (err its text unless 2xx).
func (b *book) pushed(tenant string, d time.Duration, status int, err error) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.answered(now, status, err)
	t := b.tenant(tenant)
	if status != 0 {
		t.lat[t.pushes%latencyWindow] = d
		t.pushes++
		t.lastLatency = d
	}
	if status/100 == 2 {
		t.lastOK, t.failing = now, false
		return
	}
	reason := reasonNetwork
	if status != 0 {
		reason = strconv.Itoa(status)
	}
	t.refused[reason]++
	t.lastErr, t.lastErrAt, t.failing = errText(err), now, true
}

// settled records entries Loki acknowledged and entries given up.
func (b *book) settled(tenant string, sent int, dropped map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.tenant(tenant)
	t.sent += int64(sent)
	for reason, n := range dropped {
		t.dropped[reason] += int64(n)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	var se *statusError
	if errors.As(err, &se) {
		return fmt.Sprintf("HTTP %d: %s", se.status, se.body)
	}
	return err.Error()
}

// Stats returns a snapshot of delivery: per tenant (in name order) what is
// queued, push latency, refusals by reason; and Loki's reachability.
func (c *Client) Stats() Stats {
	now := time.Now()
	s := Stats{URL: c.pushURL, QueueLimit: c.cfg.QueueBytes}
	queued := map[string][2]int64{} // tenant -> queued bytes, oldest age
	c.mu.Lock()
	s.QueuedBytes = c.queued
	for id, t := range c.tenants {
		var age int64
		if b := t.oldest(); b != nil {
			age = int64(now.Sub(b.created))
		}
		queued[id] = [2]int64{t.queued, age}
	}
	c.mu.Unlock()

	c.book.mu.Lock()
	defer c.book.mu.Unlock()
	s.Reachable, s.Checked, s.LastContact = c.book.reachable, c.book.checked, c.book.contact
	s.Error, s.ErrorAt = c.book.err, c.book.errAt
	ids := make([]string, 0, len(queued)+len(c.book.tenants))
	for id := range queued {
		ids = append(ids, id)
	}
	for id := range c.book.tenants {
		if _, ok := queued[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		ts := TenantStats{Tenant: id, QueuedBytes: queued[id][0], OldestUnacked: time.Duration(queued[id][1])}
		if t := c.book.tenants[id]; t != nil {
			ts.Pushes, ts.LastLatency, ts.EntriesSent = t.pushes, t.lastLatency, t.sent
			ts.Refused, ts.Dropped = maps(t.refused), maps(t.dropped)
			ts.LastOK, ts.LastError, ts.LastErrorAt, ts.Failing = t.lastOK, t.lastErr, t.lastErrAt, t.failing
			n := min(t.pushes, latencyWindow)
			if n > 0 {
				lat := slices.Clone(t.lat[:n])
				slices.Sort(lat)
				ts.P50, ts.P99 = quantile(lat, 0.50), quantile(lat, 0.99)
			}
		}
		s.Tenants = append(s.Tenants, ts)
	}
	return s
}

// quantile is the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func maps(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Probe asks Loki's /ready through the pushes' transport (TLS, credentials)
// and records whether Loki answered: the status page's reachability while
// no push is being made. Any HTTP answer counts as reachable; its status
// is returned.
func (c *Client) Probe(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, min(c.cfg.Timeout, 5*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.readyURL(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	resp, err := c.http.Do(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
		resp.Body.Close()
	} else if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return 0, err // shutting down: says nothing about Loki
	}
	c.book.mu.Lock()
	c.book.answered(time.Now(), status, err)
	c.book.mu.Unlock()
	return status, err
}

// readyURL is Loki's /ready under the base URL. c.URL must have been
// validated.
func (c Config) readyURL() string {
	u, _ := url.Parse(c.URL)
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), pushPath) + "/ready"
	u.RawPath = ""
	return u.String()
}
