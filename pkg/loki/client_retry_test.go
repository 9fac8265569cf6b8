package loki

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// 429, 503 and a dropped connection are retried until the batch gets
// through, exactly once, and each retry is counted under its reason. The
// batch is acked once, when it got through.
func TestRetriesUntilDelivered(t *testing.T) {
	var n atomic.Int32
	f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, _ string) bool {
		switch n.Add(1) {
		case 1:
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case 2:
			http.Error(w, "ingester unavailable", http.StatusServiceUnavailable)
		case 3:
			dropConn(t, w)
		default:
			return true
		}
		return false
	})
	c, _ := startClient(t, testConfig(f.srv.URL))
	ack := newAcker(t)
	mustConsume(t, c, entry("t", `{a="1"}`, base, "one", ack, 1))
	mustConsume(t, c, entry("t", `{a="1"}`, base+1, "two", ack, 2))
	flush(t, c)

	if got := ack.calls(); !slices.Equal(got, []int64{2}) {
		t.Errorf("acks = %v, want [2]", got)
	}
	if got := flatten(f.recorded("t")...); len(got) != 2 {
		t.Errorf("delivered %v, want the batch once", got)
	}
	if got := n.Load(); got != 4 {
		t.Errorf("requests = %d, want 4", got)
	}
	for _, reason := range []string{"429", "503", "network"} {
		if got := testutil.ToFloat64(c.m.retries.WithLabelValues("t", reason)); got != 1 {
			t.Errorf("retries{%s} = %v, want 1", reason, got)
		}
	}
}

// A 400 is final: the batch is counted as dropped, its entries are still
// acked so positions move on, and the next batch is delivered.
func TestRejectedBatchIsDroppedAndAcked(t *testing.T) {
	var n atomic.Int32
	f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, _ string) bool {
		if n.Add(1) == 1 {
			http.Error(w, "entry too far behind"+strings.Repeat(".", 5000), http.StatusBadRequest)
			return false
		}
		return true
	})
	cfg := testConfig(f.srv.URL)
	cfg.BatchSize = 1 // one entry per batch
	c, _ := startClient(t, cfg)
	ack := newAcker(t)
	mustConsume(t, c, entry("t", `{a="1"}`, base, "old", ack, 1))
	mustConsume(t, c, entry("t", `{a="1"}`, base+1, "new", ack, 2))

	if got := ack.waitSettled(2); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("acks = %v, want one per batch: [1 2]", got)
	}
	if got, want := flatten(f.recorded("t")...), []string{`{a="1"}|1700000000123456790|new`}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(c.m.dropped.WithLabelValues("t", "too_old")); got != 1 {
		t.Errorf("dropped{too_old} = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(c.m.retries); got != 0 {
		t.Errorf("a 400 was retried (%d retry series)", got)
	}
}

// A tenant whose pushes fail forever does not hold back another tenant, and
// a hard stop acks nothing that was not delivered.
func TestFailingTenantDoesNotBlockOthers(t *testing.T) {
	f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, tenant string) bool {
		if tenant == "down" {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return false
		}
		return true
	})
	cfg := testConfig(f.srv.URL)
	cfg.BatchSize = 1
	c, stop := startClient(t, cfg)
	ackDown, ackUp := newAcker(t), newAcker(t)

	mustConsume(t, c, entry("down", `{a="1"}`, base, "d1", ackDown, 1))
	f.waitRequests("down", 3) // retrying
	for i := range int64(3) {
		mustConsume(t, c, entry("up", `{a="1"}`, base+i, "u", ackUp, i+1))
	}
	if got := ackUp.waitSettled(3); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("up acks = %v, want one per batch: [1 2 3]", got)
	}

	stop()
	if c.Ready() {
		t.Error("Ready after Run returned")
	}
	if got := ackDown.calls(); len(got) != 0 {
		t.Errorf("undelivered entries acked: %v", got)
	}
	if got := testutil.ToFloat64(c.m.retries.WithLabelValues("down", "503")); got < 2 {
		t.Errorf("retries{down,503} = %v, want >= 2", got)
	}
	if err := consumeOne(context.Background(), t, c, entry("up", `{a="1"}`, base, "late", nil, 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Consume after Run returned = %v, want ErrClosed", err)
	}
}

// With MaxRetryTime set, a batch Loki keeps refusing is dropped as
// retries_exhausted and still acked.
func TestMaxRetryTimeDrops(t *testing.T) {
	f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, _ string) bool {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return false
	})
	cfg := testConfig(f.srv.URL)
	cfg.MaxRetryTime = 20 * time.Millisecond
	c, _ := startClient(t, cfg)
	ack := newAcker(t)
	mustConsume(t, c, entry("t", `{a="1"}`, base, "a", ack, 1))
	mustConsume(t, c, entry("t", `{a="1"}`, base+1, "b", ack, 2))
	flush(t, c)
	if got := ack.calls(); !slices.Equal(got, []int64{2}) {
		t.Errorf("acks = %v, want [2]", got)
	}
	if got := testutil.ToFloat64(c.m.dropped.WithLabelValues("t", reasonRetriesExhausted)); got != 2 {
		t.Errorf("dropped{retries_exhausted} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.m.entriesSent.WithLabelValues("t")); got != 0 {
		t.Errorf("entries_sent = %v, want 0", got)
	}
}

// A push that may have been stored though Loki never said so is not sent
// again blindly: podtail asks Loki for each stream's last entry and resends
// only the streams it lacks. Each way of not knowing: the connection
// dropped after the push went out, Loki storing it and answering 500 (its
// distributor does when an ingester was slow), the answer taking longer
// than loki.timeout, and a 503 that stored nothing (sent again, once).
func TestUncertainPushIsVerifiedNotResent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stored    bool // Loki stored the first push (else: refused it, storing nothing)
		partial   bool // of the two streams, only the first
		answer    func(t *testing.T, w http.ResponseWriter)
		wantCount string
	}{
		{"answer lost", true, false, func(t *testing.T, w http.ResponseWriter) { dropConn(t, w) }, "stored"},
		{"answer lost, partly stored", true, true, func(t *testing.T, w http.ResponseWriter) { dropConn(t, w) }, "partly_stored"},
		{"500 after storing", true, false, func(t *testing.T, w http.ResponseWriter) {
			http.Error(w, "rpc error: code = DeadlineExceeded desc = context deadline exceeded", http.StatusInternalServerError)
		}, "stored"},
		{"504 after storing one stream", true, true, func(t *testing.T, w http.ResponseWriter) {
			http.Error(w, "gateway timeout", http.StatusGatewayTimeout)
		}, "partly_stored"},
		{"timed out after storing", true, false, func(t *testing.T, w http.ResponseWriter) {
			time.Sleep(300 * time.Millisecond) // loki.timeout is 100ms here
			w.WriteHeader(http.StatusNoContent)
		}, "stored"},
		{"503, nothing stored", false, false, func(t *testing.T, w http.ResponseWriter) {
			http.Error(w, "no healthy upstream", http.StatusServiceUnavailable) // a gateway's
		}, "not_stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, tenant string) bool {
				if !tc.stored && n.Add(1) == 1 {
					tc.answer(t, w)
					return false
				}
				return true
			})
			f.afterStore = func(w http.ResponseWriter, r *http.Request, tenant string) bool {
				if !tc.stored || n.Add(1) != 1 {
					return true
				}
				if tc.partial { // keep the first stream only, as if Loki failed midway
					f.mu.Lock()
					last := &f.pushes[tenant][len(f.pushes[tenant])-1]
					last.Streams = last.Streams[:1]
					f.mu.Unlock()
				}
				tc.answer(t, w)
				return false
			}
			cfg := testConfig(f.srv.URL)
			cfg.Timeout = 100 * time.Millisecond
			c, _ := startClient(t, cfg)
			ack := newAcker(t)
			mustConsume(t, c, entry("t", `{a="1"}`, base, "one", ack, 1))
			mustConsume(t, c, entry("t", `{a="2"}`, base+1, "two", ack, 2))
			flush(t, c)
			if got := ack.calls(); !slices.Equal(got, []int64{2}) {
				t.Errorf("acks = %v, want the batch acked once: [2]", got)
			}
			got := flatten(f.recorded("t")...)
			slices.Sort(got)
			want := []string{`{a="1"}|1700000000123456789|one`, `{a="2"}|1700000000123456790|two`}
			if !slices.Equal(got, want) {
				t.Errorf("Loki holds %v, want each entry once: %v", got, want)
			}
			if got := testutil.ToFloat64(c.m.uncertain.WithLabelValues("t", tc.wantCount)); got != 1 {
				t.Errorf("uncertain_pushes{%s} = %v, want 1", tc.wantCount, got)
			}
			if asked := f.queryCount(); asked == 0 {
				t.Error("Loki was never asked")
			}
			if got := testutil.ToFloat64(c.m.entriesSent.WithLabelValues("t")); got != 2 {
				t.Errorf("entries_sent = %v, want 2", got)
			}
		})
	}
}

// A 429 stores nothing (Loki refuses the whole request before ingesting),
// nor does a 5xx with one of the ring errors Loki's distributor answers
// before it sends anything to an ingester (while Loki starts or stops): such
// pushes are resent without asking Loki anything.
func TestNotStoredAnswersAreResentWithoutAsking(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
	}{
		{http.StatusTooManyRequests, "Ingestion rate limit exceeded"},
		{http.StatusInternalServerError, "empty ring"},
		{http.StatusInternalServerError, "at least 1 live replicas required, could only find 0 - unhealthy instances: 127.0.0.1:9095"},
		{http.StatusServiceUnavailable, "too many unhealthy instances in the ring"},
	} {
		var n atomic.Int32
		f := newFakeLoki(t, func(w http.ResponseWriter, r *http.Request, _ string) bool {
			if n.Add(1) == 1 {
				http.Error(w, tc.body, tc.status)
				return false
			}
			return true
		})
		c, _ := startClient(t, testConfig(f.srv.URL))
		ack := newAcker(t)
		mustConsume(t, c, entry("t", `{a="1"}`, base, "one", ack, 1))
		flush(t, c)
		if got := ack.calls(); !slices.Equal(got, []int64{1}) {
			t.Errorf("%d %s: acks = %v", tc.status, tc.body, got)
		}
		if got := flatten(f.recorded("t")...); len(got) != 1 {
			t.Errorf("%d %s: Loki holds %v, want the entry once", tc.status, tc.body, got)
		}
		if asked := f.queryCount(); asked != 0 {
			t.Errorf("%d %s: Loki was asked %d times", tc.status, tc.body, asked)
		}
	}
}

// An entry whose time a push request cannot carry is dropped, counted
// "encode", and acknowledged with the rest; its neighbours are delivered.
// It comes from a source of its own: an ack of its neighbour after it, of
// the same source, would settle it too.
func TestTimeProtobufCannotCarryIsDroppedAlone(t *testing.T) {
	f := newFakeLoki(t, nil)
	c, _ := startClient(t, testConfig(f.srv.URL))
	ack, ackBad := newAcker(t), newAcker(t)
	mustConsume(t, c, entry("t", `{a="1"}`, base, "one", ack, 1))
	bad := entry("t", `{a="1"}`, 0, "year 10000", ackBad, 1)
	bad.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	mustConsume(t, c, bad)
	mustConsume(t, c, entry("t", `{a="1"}`, base+1, "three", ack, 3))
	flush(t, c)
	if got, want := flatten(f.recorded("t")...), []string{`{a="1"}|1700000000123456789|one`, `{a="1"}|1700000000123456790|three`}; !slices.Equal(got, want) {
		t.Errorf("Loki got %v, want %v", got, want)
	}
	if got := ack.calls(); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("acks %v, want [1 3]", got)
	}
	if got := ackBad.calls(); !slices.Equal(got, []int64{1}) {
		t.Errorf("the dropped entry's source got acks %v, want [1]", got)
	}
	if got := testutil.ToFloat64(c.m.dropped.WithLabelValues("t", "encode")); got != 1 {
		t.Errorf("dropped{encode} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(c.m.entriesSent.WithLabelValues("t")); got != 2 {
		t.Errorf("entries_sent = %v, want 2", got)
	}
}
