package loki

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const base = int64(1_700_000_000_123_456_789) // a timestamp with every nanosecond digit set

// Each tenant's entries arrive under its own X-Scope-OrgID with labels,
// nanosecond timestamps and structured metadata intact, and are acked only
// after Loki has answered 2xx: once per source and push, with the position
// of its last entry, which settles the ones before (an entry without an
// Acker between them does not break the run).
func TestDeliversPerTenantAndAcksAfter2xx(t *testing.T) {
	release := make(chan struct{})
	f := newFakeLoki(t, blockUntil(release))
	c, _ := startClient(t, testConfig(f.srv.URL))
	ackA, ackB := newAcker(t), newAcker(t)

	out, errs := `{app="shop", stream="stdout"}`, `{app="shop", stream="stderr"}`
	withMeta := entry("a", out, base, "a1", ackA, 1)
	withMeta.Metadata = []pipeline.Label{{Name: "request_id", Value: "r-42"}}
	mustConsume(t, c, withMeta)
	mustConsume(t, c, entry("a", errs, base+1, "a2", ackA, 2))
	mustConsume(t, c, entry("a", out, base+2, "a3", ackA, 3))
	mustConsume(t, c, entry("a", out, base+3, "a4", nil, 0)) // nobody to tell
	mustConsume(t, c, entry("b", out, base+4, "b1", ackB, 7))

	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush(context.Background()) }()
	f.waitRequests("a", 1)
	f.waitRequests("b", 1)
	if got := ackA.calls(); len(got) != 0 {
		t.Fatalf("acked %v before Loki answered", got)
	}
	close(release)
	if err := <-flushed; err != nil {
		t.Fatalf("Flush: %v", err)
	}

	if got, want := ackA.calls(), []int64{3}; !slices.Equal(got, want) {
		t.Errorf("tenant a acks = %v, want %v", got, want)
	}
	if got, want := ackB.calls(), []int64{7}; !slices.Equal(got, want) {
		t.Errorf("tenant b acks = %v, want %v", got, want)
	}
	a, b := f.recorded("a"), f.recorded("b")
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("pushes: a=%d b=%d, want 1 each", len(a), len(b))
	}
	wantA := []string{
		`{app="shop", stream="stdout"}|1700000000123456789|a1`,
		`{app="shop", stream="stdout"}|1700000000123456791|a3`,
		`{app="shop", stream="stdout"}|1700000000123456792|a4`,
		`{app="shop", stream="stderr"}|1700000000123456790|a2`,
	}
	if got := flatten(a...); !slices.Equal(got, wantA) {
		t.Errorf("tenant a got\n%v\nwant\n%v", got, wantA)
	}
	if got, want := flatten(b...), []string{`{app="shop", stream="stdout"}|1700000000123456793|b1`}; !slices.Equal(got, want) {
		t.Errorf("tenant b got %v, want %v", got, want)
	}
	if md := a[0].Streams[0].Entries[0].StructuredMetadata; len(md) != 1 || md[0].Name != "request_id" || md[0].Value != "r-42" {
		t.Errorf("structured metadata = %v", md)
	}
	if got := testutil.ToFloat64(c.m.entriesSent.WithLabelValues("a")); got != 4 {
		t.Errorf("entries_sent{a} = %v, want 4", got)
	}
	if got := testutil.ToFloat64(c.m.queuedBytes); got != 0 {
		t.Errorf("queued_bytes = %v, want 0", got)
	}
}

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

// Consume blocks while the queue is full, honours its ctx while blocked, and
// resumes once Loki acknowledges. An entry larger than the whole bound is
// still admitted into an empty queue.
func TestBackpressure(t *testing.T) {
	release := make(chan struct{})
	f := newFakeLoki(t, blockUntil(release))
	cfg := testConfig(f.srv.URL)
	cfg.QueueBytes = 5
	cfg.BatchSize = 1
	c, _ := startClient(t, cfg)
	ack := newAcker(t)

	mustConsume(t, c, entry("t", `{a="1"}`, base, "0123456789", ack, 1)) // 10 bytes > bound
	if got := testutil.ToFloat64(c.m.queuedBytes); got != 10+entryOverhead {
		t.Errorf("queued_bytes = %v, want 10 + %d", got, entryOverhead)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	err := consumeOne(ctx, t, c, entry("t", `{a="1"}`, base+1, "x", ack, 2))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Consume on a full queue = %v, want deadline exceeded", err)
	}

	consumed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		consumed <- consumeOne(ctx, t, c, entry("t", `{a="1"}`, base+2, "y", ack, 3))
	}()
	f.waitRequests("t", 1)
	close(release)
	if err := <-consumed; err != nil {
		t.Fatalf("Consume after Loki answered: %v", err)
	}
	if got := ack.waitSettled(3); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("acks = %v, want one per batch: [1 3]", got)
	}
}

// Flush sends a partial batch long before BatchWait, returns only once it is
// acked, and intake is closed afterwards.
func TestFlushSendsPartialBatchAndClosesIntake(t *testing.T) {
	f := newFakeLoki(t, nil)
	c, _ := startClient(t, testConfig(f.srv.URL)) // BatchWait is an hour
	ack := newAcker(t)
	for i := range int64(3) {
		mustConsume(t, c, entry("t", `{a="1"}`, base+i, "line", ack, i+1))
	}
	flush(t, c)
	if !c.Ready() { // Run must be running for Flush to have finished
		t.Error("not Ready while Run runs")
	}
	if got := ack.calls(); !slices.Equal(got, []int64{3}) {
		t.Errorf("acks when Flush returned = %v, want [3]", got)
	}
	if got := f.recorded("t"); len(got) != 1 || len(flatten(got...)) != 3 {
		t.Errorf("pushes = %v, want one with 3 entries", got)
	}
	if err := consumeOne(context.Background(), t, c, entry("t", `{a="1"}`, base, "late", ack, 4)); !errors.Is(err, ErrClosed) {
		t.Errorf("Consume after Flush = %v, want ErrClosed", err)
	}
	flush(t, c) // idempotent
}

// Flush gives up at its deadline when Loki does not answer.
func TestFlushHonoursDeadline(t *testing.T) {
	f := newFakeLoki(t, blockUntil(make(chan struct{})))
	c, _ := startClient(t, testConfig(f.srv.URL))
	mustConsume(t, c, entry("t", `{a="1"}`, base, "line", nil, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush = %v, want deadline exceeded", err)
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

// A batch is sealed before the entry that would overflow BatchSize, so
// batches stay within it and go out in order.
func TestBatchSize(t *testing.T) {
	f := newFakeLoki(t, nil)
	cfg := testConfig(f.srv.URL)
	cfg.BatchSize = 25
	c, _ := startClient(t, cfg)
	for i := range int64(5) {
		mustConsume(t, c, entry("t", `{a="1"}`, base+i, "0123456789", nil, 0))
	}
	flush(t, c)
	var sizes []int
	for _, p := range f.recorded("t") {
		sizes = append(sizes, len(flatten(p)))
	}
	if !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Errorf("entries per push = %v, want [2 2 1]", sizes)
	}
}

// A batch is sent once its first entry is BatchWait old, without Flush.
func TestBatchWait(t *testing.T) {
	f := newFakeLoki(t, nil)
	cfg := testConfig(f.srv.URL)
	cfg.BatchWait = 10 * time.Millisecond
	c, _ := startClient(t, cfg)
	ack := newAcker(t)
	mustConsume(t, c, entry("t", `{a="1"}`, base, "a", ack, 1))
	ack.waitSettled(1)
	mustConsume(t, c, entry("t", `{a="1"}`, base+1, "b", ack, 2))
	ack.waitSettled(2)
}

// Entries consumed before Run starts wait in the queue and are delivered.
func TestConsumeBeforeRun(t *testing.T) {
	f := newFakeLoki(t, nil)
	c, err := New(testConfig(f.srv.URL), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ack := newAcker(t)
	mustConsume(t, c, entry("t", `{a="1"}`, base, "early", ack, 1))
	if c.Ready() {
		t.Error("Ready before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	flush(t, c)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if got := ack.calls(); !slices.Equal(got, []int64{1}) {
		t.Errorf("acks = %v", got)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the error
	}{
		{"no url", Config{}, []string{"loki.url"}},
		{"bad scheme", Config{URL: "ftp://loki:3100"}, []string{"loki.url", "http or https"}},
		{"no host", Config{URL: "http://"}, []string{"loki.url"}},
		{"unparsable", Config{URL: "http://[::1"}, []string{"loki.url"}},
		{"negatives", Config{URL: "http://loki", BatchSize: -1, QueueBytes: -1, MaxRetryTime: -1},
			[]string{"loki.batch_size", "loki.queue_bytes", "loki.max_retry_time"}},
		{"backoffs", Config{URL: "http://loki", MinBackoff: time.Second, MaxBackoff: time.Millisecond},
			[]string{"loki.max_backoff"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	reg := prometheus.NewRegistry()
	if _, err := New(Config{URL: "http://loki:3100"}, nil, reg); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if _, err := New(Config{URL: "http://loki:3100"}, nil, reg); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
}

func TestPushURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://loki:3100":                   "http://loki:3100/loki/api/v1/push",
		"http://loki:3100/":                  "http://loki:3100/loki/api/v1/push",
		"https://gw/tenant-proxy":            "https://gw/tenant-proxy/loki/api/v1/push",
		"http://loki:3100/loki/api/v1/push":  "http://loki:3100/loki/api/v1/push",
		"http://loki:3100/loki/api/v1/push/": "http://loki:3100/loki/api/v1/push",
	} {
		if got := (Config{URL: in}).pushURL(); got != want {
			t.Errorf("pushURL(%q) = %q, want %q", in, got, want)
		}
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

// Consume takes entries while there is room and, when the queue stays
// full past ctx, says how many it took; the rest are the caller's (and are
// not acked). Another tenant's entry in the run is refused, not queued
// under the first's.
func TestConsumeTakesWhatFits(t *testing.T) {
	release := make(chan struct{})
	f := newFakeLoki(t, blockUntil(release))
	cfg := testConfig(f.srv.URL)
	cfg.QueueBytes = 3 * (1 + entryOverhead)
	c, _ := startClient(t, cfg)
	ack := newAcker(t)
	var es []pipeline.Entry
	for i := range 5 {
		es = append(es, entry("t", `{a="1"}`, base+int64(i), strconv.Itoa(i), ack, int64(i+1)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	n, err := c.Consume(ctx, es)
	cancel()
	if n != 3 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Consume = %d, %v; want 3, deadline exceeded", n, err)
	}
	if got := testutil.ToFloat64(c.m.queuedBytes); got != 3*(1+entryOverhead) {
		t.Errorf("queued_bytes = %v", got)
	}
	close(release)
	flush(t, c)
	if got := ack.calls(); !slices.Equal(got, []int64{3}) {
		t.Errorf("acks %v, want [3]", got)
	}
	if got := len(flatten(f.recorded("t")...)); got != 3 {
		t.Errorf("tenant t got %d entries, want 3", got)
	}

	f2 := newFakeLoki(t, nil)
	c2, _ := startClient(t, testConfig(f2.srv.URL))
	if n, err := c2.Consume(context.Background(), []pipeline.Entry{entry("u", `{a="1"}`, base, "u", nil, 0), entry("t", `{a="1"}`, base, "t", nil, 0)}); n != 1 || err == nil {
		t.Errorf("a run of two tenants: %d taken, %v; want 1 and an error", n, err)
	}
	flush(t, c2)
	if got := flatten(f2.recorded("u")...); !slices.Equal(got, []string{`{a="1"}|1700000000123456789|u`}) {
		t.Errorf("tenant u got %v", got)
	}
	if got := f2.recorded("t"); len(got) != 0 {
		t.Errorf("tenant t got %v", got)
	}
}

// A push body goes back to the pool only when the push and every request
// reading it are done with it: a request's reader still sees the bytes
// after the push gave the body up, a second Close changes nothing, and
// releasing more often than held panics rather than let two pushes share
// an array.
func TestPushBodyReferences(t *testing.T) {
	pb := newPushBody()
	pb.write([]byte("push body bytes"))
	r := pb.reader()
	pb.release() // the push is done; the transport still reads
	if n := pb.refs.Load(); n != 1 {
		t.Fatalf("refs = %d after the push let go with a request open, want 1", n)
	}
	other := newPushBody() // cannot be pb, nor have its chunk: neither is back
	other.write([]byte("another push"))
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "push body bytes" {
		t.Fatalf("request read %q, %v", got, err)
	}
	_ = r.Close()
	_ = r.Close()
	if n := pb.refs.Load(); n != 0 {
		t.Fatalf("refs = %d after the request closed (twice), want 0", n)
	}
	defer func() {
		if recover() == nil {
			t.Error("a release beyond the references did not panic")
		}
	}()
	pb.release()
}

// A body spans chunks of the queue's memory: written in pieces of any size
// it reads back whole through a request's reader, however the reader is
// asked, and its chunks all come back once the push and the request let go.
func TestPushBodyAcrossParts(t *testing.T) {
	before, _ := chunks.Stats()
	want := make([]byte, 3*bodyPart+1234)
	rand.New(rand.NewSource(2)).Read(want)
	pb := newPushBody()
	for p := want; len(p) > 0; {
		n := min(len(p), 777)
		pb.write(p[:n])
		p = p[n:]
	}
	if len(pb.parts) != 4 || pb.size != len(want) {
		t.Fatalf("%d parts, size %d; want 4, %d", len(pb.parts), pb.size, len(want))
	}
	r := pb.reader()
	got, err := io.ReadAll(iotest.HalfReader(r))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), equal: %v", len(got), err, bytes.Equal(got, want))
	}
	if !bytes.Equal(pb.bytes(), want) {
		t.Fatal("bytes() differs from what was written")
	}
	pb.release()
	if len(pb.parts) != 4 {
		t.Fatal("chunks went back while a request still held the body")
	}
	_ = r.Close()
	if len(pb.parts) != 0 {
		t.Fatal("the chunks stayed with the body after the last reference went")
	}
	// (A late release from an earlier test may still be on its way.)
	if now, back := chunksBack(before); !back {
		t.Fatalf("%d bytes of chunks out after the body was let go, %d before", now, before)
	}
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Fatal("a reader read after Close")
	}
}
