package loki

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
)

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
