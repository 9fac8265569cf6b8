package loki

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podtail/podtail/pkg/pipeline"
)

// queuedNow is the client's queued byte count.
func (c *Client) queuedNow() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued
}

// tenantGauge reads one of the per-tenant gauges as a scrape would.
func tenantGauge(t *testing.T, c *Client, name, tenant string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(stateCollector{c})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == tenant {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// unit is what a 10-byte entry is charged against the queue bound.
const unit = 10 + entryOverhead

// tryConsume reports whether c took e within a short wait: false means
// Consume is blocked on the queue bound.
func tryConsume(t *testing.T, c *Client, e pipeline.Entry) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := consumeOne(ctx, t, c, e)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Consume: %v", err)
	}
	return err == nil
}

// A tenant whose pushes Loki refuses forever (429) fills at most three
// quarters of the queue; another tenant still gets room and is delivered,
// and the global bound holds throughout.
func TestStuckTenantLeavesRoomForOthers(t *testing.T) {
	f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, tenant string) bool {
		if tenant == "stuck" {
			http.Error(w, "rate limited", http.StatusTooManyRequests)
			return false
		}
		return true
	})
	cfg := testConfig(f.srv.URL)
	cfg.QueueBytes = 10 * unit
	cfg.BatchSize = 10
	c, _ := startClient(t, cfg)

	stuck := 0
	for tryConsume(t, c, entry("stuck", `{a="1"}`, base+int64(stuck), "0123456789", nil, 0)) {
		stuck++
		if stuck > 20 {
			t.Fatal("the stuck tenant was never stopped by the bound")
		}
	}
	if q := c.queuedNow(); q < cfg.QueueBytes*3/4 || q > cfg.QueueBytes*3/4+unit {
		t.Errorf("stuck tenant holds %d of %d queued bytes, want three quarters (+ one entry)", q, cfg.QueueBytes)
	}

	ack := newAcker(t)
	for i := range int64(50) { // five times the queue's size
		mustConsume(t, c, entry("ok", `{a="1"}`, base+i, "0123456789", ack, i+1))
		if q := c.queuedNow(); q > cfg.QueueBytes+unit {
			t.Fatalf("queued %d bytes, bound %d (+ one entry)", q, cfg.QueueBytes)
		}
	}
	ack.waitSettled(50)
	if got := ack.settled(); got != 50 {
		t.Errorf("ok tenant settled up to %d, want 50", got)
	}
	if got := testutil.ToFloat64(c.m.entriesRetried.WithLabelValues("stuck", "429")); got < 1 {
		t.Errorf("entries_retried{stuck,429} = %v, want >= 1", got)
	}
}

// While one tenant has filled the queue (Loki slow for everyone), a tenant
// with nothing queued is admitted at once, and the flooding tenant is not.
func TestQuietTenantAdmittedWhileAnotherFloods(t *testing.T) {
	release := make(chan struct{})
	f := newFakeLoki(t, blockUntil(release))
	cfg := testConfig(f.srv.URL)
	cfg.QueueBytes = 10 * unit
	cfg.BatchSize = 10
	c, _ := startClient(t, cfg)

	n := 0
	for tryConsume(t, c, entry("flood", `{a="1"}`, base+int64(n), "0123456789", nil, 0)) {
		n++
	}
	if !tryConsume(t, c, entry("quiet", `{a="1"}`, base, "q", nil, 0)) {
		t.Fatal("quiet tenant blocked behind the flooding one")
	}
	if tryConsume(t, c, entry("flood", `{a="1"}`, base+int64(n), "0123456789", nil, 0)) {
		t.Error("flooding tenant admitted beyond its share")
	}
	if q, ok := tenantGauge(t, c, "podtail_loki_tenant_queued_bytes", "quiet"); !ok || q != 1+entryOverhead {
		t.Errorf("tenant_queued_bytes{quiet} = %v (%v), want 1 + %d", q, ok, entryOverhead)
	}
	time.Sleep(20 * time.Millisecond)
	if age, _ := tenantGauge(t, c, "podtail_loki_oldest_unacked_age_seconds", "flood"); age < 0.02 {
		t.Errorf("oldest_unacked_age{flood} = %v while Loki holds its pushes, want >= 0.02", age)
	}
	close(release)
	flush(t, c)
	if age, ok := tenantGauge(t, c, "podtail_loki_oldest_unacked_age_seconds", "flood"); !ok || age != 0 {
		t.Errorf("oldest_unacked_age{flood} = %v (%v) after everything was acked, want 0", age, ok)
	}
}

// A 400 that names one entry drops that entry only: the rest of the batch,
// which Loki stored, counts as sent, and the batch is acknowledged.
func TestRefusedEntryDropsOnlyThatEntry(t *testing.T) {
	f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, _ string) bool {
		// What Loki v3's distributor answers for one entry older than
		// reject_old_samples_max_age.
		http.Error(w, "entry for stream '{a=\"1\"}' has timestamp too old: 2023-11-14T22:13:20Z, oldest acceptable timestamp is: 2026-11-18T00:00:00Z", http.StatusBadRequest)
		return false
	})
	c, _ := startClient(t, testConfig(f.srv.URL))
	ack := newAcker(t)
	for i := range int64(3) {
		mustConsume(t, c, entry("t", `{a="1"}`, base+i, "line", ack, i+1))
	}
	flush(t, c)
	if got := ack.calls(); !slices.Equal(got, []int64{3}) {
		t.Errorf("acks = %v, want the batch acked once: [3]", got)
	}
	if got := testutil.ToFloat64(c.m.dropped.WithLabelValues("t", "too_old")); got != 1 {
		t.Errorf("dropped{too_old} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(c.m.entriesSent.WithLabelValues("t")); got != 2 {
		t.Errorf("sent = %v, want 2", got)
	}
}

func TestRefused(t *testing.T) {
	b := newBatch(time.Now())
	for i := range int64(5) {
		e := entry("t", `{app="x"}`, base+i, "l", nil, 0)
		b.add(&e)
	}
	e := entry("t", `{app="y"}`, base, "l", nil, 0)
	b.add(&e)
	for _, tc := range []struct {
		name, body string
		want       map[string]int
	}{
		{"one too old", `entry for stream '{app="x"}' has timestamp too old: 2023-11-14T22:13:20Z, oldest acceptable timestamp is: 2026-11-18T00:00:00Z`,
			map[string]int{"too_old": 1}},
		{"grouped", `3 errors like: entry for stream '{app="x"}' has timestamp too new: 2030-01-01T00:00:00Z; 1 errors like: max entry size '100' bytes exceeded for stream '{app="x"}' while adding an entry with length '200' bytes`,
			map[string]int{"too_new": 3, "line_too_long": 1}},
		{"bad labels refuse the stream", `error parsing labels '{app="y"}' with error: something`,
			map[string]int{"bad_labels": 1}},
		{"label names limit", `entry for stream '{app="x"}' has 20 label names; limit 15`,
			map[string]int{"bad_labels": 5}},
		{"ingester", "entry with timestamp 2023-11-14 22:13:20 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2023-11-14T22:13:20Z, oldest acceptable timestamp is: 2026-11-18T00:00:00Z',\nuser 't', total ignored: 2 out of 5 for stream: {app=\"x\"}",
			map[string]int{"too_old": 2}},
		{"unknown", `something else entirely`, map[string]int{"rejected_400": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, total := refused(tc.body, b)
			sum := 0
			for _, n := range tc.want {
				sum += n
			}
			if total != sum || len(got) != len(tc.want) {
				t.Fatalf("refused = %v (total %d), want %v", got, total, tc.want)
			}
			for k, n := range tc.want {
				if got[k] != n {
					t.Errorf("refused[%s] = %d, want %d (all: %v)", k, got[k], n, got)
				}
			}
		})
	}
	if got, total := refused("  ", b); total != 0 || len(got) != 0 {
		t.Errorf("empty body: %v %d", got, total)
	}
}

// Readers waiting for room are woken one at a time as room appears: every
// waiter of every tenant gets in, none is forgotten, also when waiters in
// the middle of the line give up (their context ends), and a waiter woken
// just as it gives up passes its turn on.
func TestEveryWaiterGetsInOnce(t *testing.T) {
	release := make(chan struct{})
	f := newFakeLoki(t, blockUntil(release))
	cfg := testConfig(f.srv.URL)
	cfg.QueueBytes = 1 // every entry fills the queue until it is pushed
	cfg.BatchSize = 1
	c, _ := startClient(t, cfg)
	mustConsume(t, c, entry("a", `{a="1"}`, base, "first", nil, 0))

	const waiters, quitters = 30, 10
	got := make(chan error, waiters+quitters)
	for i := range waiters + quitters {
		tenant := string(rune('a' + i%3))
		timeout := waitLimit
		if i%4 == 1 && i/4 < quitters {
			timeout = 50 * time.Millisecond
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			got <- consumeOne(ctx, t, c, entry(tenant, `{a="1"}`, base+int64(i)+1, "w", nil, 0))
		}()
	}
	gaveUp, in := 0, 0
	for range quitters {
		if err := <-got; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a waiter with a short deadline got %v before room appeared", err)
		}
		gaveUp++
	}
	close(release)
	for range waiters {
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("waiter: %v", err)
			}
			in++
		case <-time.After(waitLimit):
			t.Fatalf("%d of %d waiters got in; the rest were never woken", in, waiters)
		}
	}
	c.mu.Lock()
	lined := len(c.lined)
	c.mu.Unlock()
	if lined != 0 {
		t.Errorf("%d tenants still in line", lined)
	}
}
