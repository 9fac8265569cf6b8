package loki

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podtail/podtail/pkg/pipeline"
)

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
