package loki

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Stats tells, per tenant, what Loki answered: latency of the pushes it
// answered, refused pushes by status, dropped entries by reason, the last
// error while the tenant is failing, and a success clears failing but keeps
// the error; Loki's reachability follows the last request.
func TestStats(t *testing.T) {
	var refuse atomic.Int32 // pushes of tenant "b" still to answer 429
	refuse.Store(2)
	f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, tenant string) bool {
		switch {
		case tenant == "b" && refuse.Add(-1) >= 0:
			http.Error(w, "Ingestion rate limit exceeded for user b", http.StatusTooManyRequests)
			return false
		case tenant == "c":
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return false
		}
		return true
	})
	c, _ := startClient(t, testConfig(f.srv.URL))
	if st := c.Stats(); !st.Checked.IsZero() || len(st.Tenants) != 0 || st.QueueLimit != DefaultQueueBytes {
		t.Fatalf("before any push: %+v", st)
	}
	mustConsume(t, c, entry("a", `{app="x"}`, base, "a1", newAcker(t), 1))
	mustConsume(t, c, entry("b", `{app="y"}`, base, "b1", newAcker(t), 1))
	mustConsume(t, c, entry("c", `{app="z"}`, base, "c1", newAcker(t), 1))
	mustConsume(t, c, entry("c", `{app="z"}`, base+1, "c2", newAcker(t), 2))
	flush(t, c)

	st := c.Stats()
	if !st.Reachable || st.LastContact.IsZero() || st.QueuedBytes != 0 {
		t.Errorf("Loki: reachable %v, last contact %v, queued %d", st.Reachable, st.LastContact, st.QueuedBytes)
	}
	if len(st.Tenants) != 3 {
		t.Fatalf("tenants: %+v", st.Tenants)
	}
	a, b, cc := st.Tenants[0], st.Tenants[1], st.Tenants[2]
	if a.Tenant != "a" || a.Pushes != 1 || a.EntriesSent != 1 || a.Failing || a.LastError != "" || len(a.Refused) != 0 || a.P50 <= 0 || a.P99 < a.P50 || a.LastLatency <= 0 {
		t.Errorf("tenant a: %+v", a)
	}
	if b.Pushes != 3 || b.EntriesSent != 1 || b.Refused["429"] != 2 || b.Failing || !strings.Contains(b.LastError, "HTTP 429: Ingestion rate limit exceeded for user b") ||
		b.LastErrorAt.IsZero() || b.LastOK.Before(b.LastErrorAt) {
		t.Errorf("tenant b (refused twice, then delivered): %+v", b)
	}
	if cc.Pushes != 1 || cc.EntriesSent != 0 || cc.Refused["401"] != 1 || cc.Dropped["rejected_401"] != 2 || !cc.Failing || !strings.Contains(cc.LastError, "HTTP 401") {
		t.Errorf("tenant c (refused for good): %+v", cc)
	}

	// Loki gone: the probe says so, with the error; back: reachable again.
	f.srv.Close()
	if _, err := c.Probe(context.Background()); err == nil {
		t.Fatal("probe of a closed server succeeded")
	}
	if st := c.Stats(); st.Reachable || st.Error == "" || st.ErrorAt.IsZero() {
		t.Errorf("after Loki went away: reachable %v, error %q", st.Reachable, st.Error)
	}
}

func TestQuantile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := quantile(lat, 0.5), quantile(lat, 0.99); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("p50 %v, p99 %v", p50, p99)
	}
	if q := quantile(lat[:1], 0.99); q != time.Millisecond {
		t.Errorf("one value: %v", q)
	}
}

func TestReadyURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://loki:3100":                     "http://loki:3100/ready",
		"http://loki:3100/":                    "http://loki:3100/ready",
		"https://gw/tenant-a/loki/api/v1/push": "https://gw/tenant-a/ready",
	} {
		if got := (Config{URL: in}).readyURL(); got != want {
			t.Errorf("readyURL(%s) = %s, want %s", in, got, want)
		}
	}
}
