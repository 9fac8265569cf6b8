package loki

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/podtail/podtail/pkg/pipeline"
)

// waitLimit bounds every wait in these tests; reaching it is a failure, never
// a synchronisation point.
const waitLimit = 10 * time.Second

// fakeLoki speaks Loki's push wire format and records what each tenant
// (X-Scope-OrgID) pushed. hook, if set, decides each request's fate first:
// returning false means it has written an error response (or hijacked the
// connection) and the request is not recorded.
type fakeLoki struct {
	t    *testing.T
	srv  *httptest.Server
	hook func(w http.ResponseWriter, r *http.Request, tenant string) bool
	// afterStore, if set, runs once a push is recorded; false means it has
	// answered (or hijacked the connection) itself.
	afterStore func(w http.ResponseWriter, r *http.Request, tenant string) bool
	queries    int // query_range requests answered
	// queryHook, if set, sees each query_range request first; false means
	// it has answered.
	queryHook func(w http.ResponseWriter) bool

	mu       sync.Mutex
	pushes   map[string][]push.PushRequest
	requests map[string]int // per tenant, recorded or not
	changed  chan struct{}
}

func newFakeLoki(t *testing.T, hook func(w http.ResponseWriter, r *http.Request, tenant string) bool) *fakeLoki {
	f := &fakeLoki{
		t:        t,
		hook:     hook,
		pushes:   make(map[string][]push.PushRequest),
		requests: make(map[string]int),
		changed:  make(chan struct{}),
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLoki) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/loki/api/v1/query_range" {
		if f.queryHook != nil && !f.queryHook(w) {
			f.mu.Lock()
			f.queries++
			f.mu.Unlock()
			return
		}
		f.queryRange(w, r)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != pushPath {
		f.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		f.t.Errorf("Content-Type = %q", ct)
	}
	if ua := r.Header.Get("User-Agent"); ua != "podtail-test" {
		f.t.Errorf("User-Agent = %q", ua)
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return // client went away
	}
	body, err := snappy.Decode(nil, raw)
	if err != nil {
		f.t.Errorf("snappy: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req push.PushRequest
	if err := req.Unmarshal(body); err != nil {
		f.t.Errorf("unmarshal: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tenant := r.Header.Get("X-Scope-OrgID")
	f.mu.Lock()
	f.requests[tenant]++
	f.notify()
	f.mu.Unlock()
	if f.hook != nil && !f.hook(w, r, tenant) {
		return
	}
	f.mu.Lock()
	f.pushes[tenant] = append(f.pushes[tenant], req)
	f.notify()
	f.mu.Unlock()
	if f.afterStore != nil && !f.afterStore(w, r, tenant) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// queryRange answers a log query for one exact stream selector (the
// rendered labels) in [start, end), as Loki's query_range API does.
func (f *fakeLoki) queryRange(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	start, _ := strconv.ParseInt(q.Get("start"), 10, 64)
	end, _ := strconv.ParseInt(q.Get("end"), 10, 64)
	var values [][2]string
	f.mu.Lock()
	f.queries++
	for _, req := range f.pushes[r.Header.Get("X-Scope-OrgID")] {
		for _, s := range req.Streams {
			if s.Labels != q.Get("query") {
				continue
			}
			for _, e := range s.Entries {
				if ns := e.Timestamp.UnixNano(); ns >= start && ns < end {
					values = append(values, [2]string{strconv.FormatInt(ns, 10), e.Line})
				}
			}
		}
	}
	f.mu.Unlock()
	type stream struct {
		Values [][2]string `json:"values"`
	}
	var out struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string   `json:"resultType"`
			Result     []stream `json:"result"`
		} `json:"data"`
	}
	out.Status, out.Data.ResultType = "success", "streams"
	if len(values) > 0 {
		out.Data.Result = []stream{{Values: values}}
	}
	_ = json.NewEncoder(w).Encode(out)
}

// queryCount is how many query_range requests Loki was sent.
func (f *fakeLoki) queryCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries
}

// dropConn closes the client's connection without an answer.
func dropConn(t *testing.T, w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	_ = conn.Close()
}

func (f *fakeLoki) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitFor blocks until cond (called with f.mu held) is true.
func (f *fakeLoki) waitFor(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.After(waitLimit)
	for {
		f.mu.Lock()
		ok, ch := cond(), f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			f.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitRequests waits until tenant has sent at least n requests.
func (f *fakeLoki) waitRequests(tenant string, n int) {
	f.t.Helper()
	f.waitFor("requests", func() bool { return f.requests[tenant] >= n })
}

// recorded returns the pushes stored for tenant.
func (f *fakeLoki) recorded(tenant string) []push.PushRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pushes[tenant])
}

// acker is a source's Acker: Ack(pos) settles every entry of the source up
// to pos (pipeline.Acker), and the sink may skip the acks of a run of
// entries but the last (it makes one call per run in a batch). It records
// the calls and fails the test on a repeated or out-of-order one, which
// the pipeline contract forbids.
type acker struct {
	t       *testing.T
	mu      sync.Mutex
	got     []int64 // the positions Ack was called with, in order
	changed chan struct{}
}

func newAcker(t *testing.T) *acker { return &acker{t: t, changed: make(chan struct{})} }

func (a *acker) Ack(pos int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.got); n > 0 && pos <= a.got[n-1] {
		a.t.Errorf("Ack(%d) after Ack(%d)", pos, a.got[n-1])
	}
	a.got = append(a.got, pos)
	close(a.changed)
	a.changed = make(chan struct{})
}

// calls returns the positions Ack was called with, in order: one per run
// of the source's entries in a batch.
func (a *acker) calls() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

// settled is the position up to which every entry is settled: the last one
// acked, 0 if none.
func (a *acker) settled() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return lastOr0(a.got)
}

func lastOr0(got []int64) int64 {
	if len(got) == 0 {
		return 0
	}
	return got[len(got)-1]
}

// waitSettled blocks until every entry up to pos is settled and returns
// the calls made so far.
func (a *acker) waitSettled(pos int64) []int64 {
	a.t.Helper()
	deadline := time.After(waitLimit)
	for {
		a.mu.Lock()
		got, ch := slices.Clone(a.got), a.changed
		a.mu.Unlock()
		if lastOr0(got) >= pos {
			return got
		}
		select {
		case <-ch:
		case <-deadline:
			a.t.Fatalf("timed out waiting for position %d to be settled, have calls %v", pos, got)
		}
	}
}

// testConfig is fast enough for tests: tiny backoffs, batches sent only by
// size or Flush unless a test says otherwise.
func testConfig(url string) Config {
	return Config{
		URL:        url,
		BatchSize:  1 << 20,
		BatchWait:  time.Hour,
		Timeout:    5 * time.Second,
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
		UserAgent:  "podtail-test",
	}
}

// startClient runs a Client until stop is called or the test ends. stop
// hard-stops it (cancels Run's ctx) and checks Run's result.
func startClient(t *testing.T, cfg Config) (c *Client, stop func()) {
	t.Helper()
	c, err := New(cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	chunksBefore[c], _ = chunks.Stats()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// flush calls c.Flush with a generous deadline and fails the test on error.
func flush(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	// Everything is settled: every chunk must be back, since the garbage
	// collector never frees them (tests run one at a time). A push's body
	// goes back just after its batch settles, and the transport may close
	// the request a moment later: a leak is what stays out.
	if before, ok := chunksBefore[c]; ok {
		if now, back := chunksBack(before); !back {
			t.Errorf("%v after Flush, %d bytes of queue chunks are still out (%d before the client started)", waitLimit, now, before)
		}
	}
}

// chunksBack waits up to waitLimit for the chunks out to be at most before
// (the pool is the process's: a release may be on its way), and returns
// how many bytes are out then.
func chunksBack(before int64) (now int64, back bool) {
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
		now, _ = chunks.Stats()
		if now <= before {
			return now, true
		}
		if time.Now().After(deadline) {
			return now, false
		}
	}
}

// chunksBefore: the queue chunks out when each client started.
var chunksBefore = map[*Client]int64{}

// blockUntil returns a hook that holds every request until release is closed
// (or the client goes away).
func blockUntil(release <-chan struct{}) func(http.ResponseWriter, *http.Request, string) bool {
	return func(w http.ResponseWriter, r *http.Request, _ string) bool {
		select {
		case <-release:
			return true
		case <-r.Context().Done():
			return false
		}
	}
}

// entry builds an entry whose line is the given string.
func entry(tenant, labels string, ns int64, line string, a pipeline.Acker, pos int64) pipeline.Entry {
	return pipeline.Entry{
		Tenant: tenant,
		Labels: labels,
		Time:   time.Unix(0, ns),
		Line:   line,
		Ack:    a,
		Pos:    pos,
	}
}

func mustConsume(t *testing.T, c *Client, e pipeline.Entry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := consumeOne(ctx, t, c, e); err != nil {
		t.Fatalf("Consume: %v", err)
	}
}

// consumeOne hands c the one entry e and returns why c did not take it, or
// nil if it did; taking it with an error, or refusing it without one,
// fails the test.
func consumeOne(ctx context.Context, t *testing.T, c *Client, e pipeline.Entry) error {
	n, err := c.Consume(ctx, []pipeline.Entry{e})
	if (n == 1) != (err == nil) {
		t.Errorf("Consume of one entry = %d, %v", n, err)
	}
	return err
}

// flatten lists a push's entries as "labels|unixnano|line" in wire order.
func flatten(reqs ...push.PushRequest) []string {
	var out []string
	for _, r := range reqs {
		for _, s := range r.Streams {
			for _, e := range s.Entries {
				out = append(out, fmt.Sprintf("%s|%d|%s", s.Labels, e.Timestamp.UnixNano(), e.Line))
			}
		}
	}
	return out
}
