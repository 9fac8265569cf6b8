package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// fixture is a report with two tenants' sources and a third tenant whose
// pushes Loki refuses.
func fixture() *StatusReport {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	yes := true
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	return &StatusReport{
		Time: now, Version: "v9", Host: "web-1",
		Loki: LokiStatus{URL: "http://loki:3100/loki/api/v1/push", Reachable: &yes, Checked: ago(time.Second), LastContact: ago(time.Second),
			QueuedBytes: 2048, QueueLimitBytes: 6 << 20},
		Tenants: []TenantStatus{
			{Tenant: "acme", Allowed: true, Sources: 2, Pushes: 10, EntriesSent: 500, PushLatency: PushLatency{Last: 0.012, P50: 0.01, P99: 0.2}},
			{Tenant: "globex", Allowed: true, Sources: 1, Pushes: 3, EntriesSent: 20},
			{Tenant: "spammer", Allowed: true, Sources: 1, QueuedBytes: 2048, OldestUnackedSeconds: 42, Pushes: 7,
				RefusedPushes: map[string]int64{"429": 7}, DroppedEntries: map[string]int64{"too_old": 2},
				LastError: "HTTP 429: Ingestion rate limit exceeded for user spammer", LastErrorAt: ago(2 * time.Second), Failing: true},
		},
		Sources: []SourceStatus{
			{Key: "container:aaa", Kind: "container", Container: "shop-1", ID: "aaa", Path: "/var/lib/containers/aaa/ctr.log", Tenant: "acme",
				Application: "shop", Version: "v1", Stream: "stdout+stderr", LogDriver: "k8s-file", State: "reading", BytesRead: 4096, BytesAcked: 4096},
			{Key: "file:/logs#fp", Kind: "file", Container: "shop-1", Path: "/logs/acme_shop_v1.log", Tenant: "acme",
				Application: "shop", Version: "v1", Stream: "file", State: "reading", BytesRead: 9000, BytesAcked: 8000, LagBytes: 1000, LagSeconds: 1.5},
			{Key: "container:bbb", Kind: "container", Container: "<script>alert(1)</script>", ID: "bbb", Path: "journal", Tenant: "globex",
				Application: "blog", Version: "v2", Stream: "stdout+stderr", LogDriver: "journald", State: "done", BytesRead: 10, BytesAcked: 10},
			{Key: "container:ccc", Kind: "container", Container: "spam-1", ID: "ccc", Path: "/var/lib/containers/ccc/ctr.log", Tenant: "spammer",
				Application: "spam", Version: "v1", Stream: "stdout+stderr", LogDriver: "k8s-file", State: "reading", BytesRead: 300, LagBytes: 300, LagSeconds: 42,
				LastError: "Loki refuses tenant spammer's pushes: HTTP 429: Ingestion rate limit exceeded for user spammer"},
		},
	}
}

// serve runs a server with the status on (provider p) and returns its
// address.
func serve(t *testing.T, p *StatusProvider) string {
	t.Helper()
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), nil, zap.NewNop(), WithStatus(p))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + s.Addr()
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// The status is served only when server.status asks for it, answers 503
// until podtail's sources exist, then the report, as JSON and as a page.
func TestStatusServedOnlyWhenEnabled(t *testing.T) {
	off := serve(t, nil)
	for _, path := range []string{"/status", "/status.json", "/status/status.js"} {
		if code, _, _ := get(t, off+path); code != http.StatusNotFound {
			t.Errorf("status off: %s answered %d, want 404", path, code)
		}
	}
	p := &StatusProvider{}
	on := serve(t, p)
	if code, _, body := get(t, on+"/status.json"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("before Set: %d %q, want 503", code, body)
	}
	p.Set(func(context.Context) (*StatusReport, error) { return fixture(), nil })
	if code, h, _ := get(t, on+"/status"); code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Errorf("/status: %d %s", code, h.Get("Content-Type"))
	}
	for _, asset := range []string{"/status/status.css", "/status/status.js"} {
		if code, _, body := get(t, on+asset); code != http.StatusOK || len(body) < 100 {
			t.Errorf("%s: %d, %d bytes", asset, code, len(body))
		}
	}
	if code, _, _ := get(t, on+"/status/page.html"); code != http.StatusNotFound {
		t.Errorf("the template itself is served (%d)", code)
	}
}

// /status.json is the report, narrowed by ?tenant= and ?app=.
func TestStatusJSON(t *testing.T) {
	p := &StatusProvider{}
	p.Set(func(context.Context) (*StatusReport, error) { return fixture(), nil })
	srv := httptest.NewServer(http.HandlerFunc(p.serveJSON))
	defer srv.Close()

	code, h, body := get(t, srv.URL+"/status.json")
	if code != 200 || h.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("%d %s", code, h.Get("Content-Type"))
	}
	var all map[string]any
	if err := json.Unmarshal([]byte(body), &all); err != nil {
		t.Fatal(err)
	}
	if _, ok := all["filter"]; ok {
		t.Errorf("an unfiltered report names a filter: %v", all["filter"])
	}
	var rep StatusReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Sources) != 4 || len(rep.Tenants) != 3 || rep.Loki.Reachable == nil || !*rep.Loki.Reachable {
		t.Errorf("got %d sources, %d tenants, loki %+v", len(rep.Sources), len(rep.Tenants), rep.Loki)
	}
	// The fields scripts read, by their JSON names.
	for _, field := range []string{`"lag_bytes": 1000`, `"lag_seconds": 1.5`, `"bytes_read": 9000`, `"bytes_acked": 8000`,
		`"log_driver": "k8s-file"`, `"application": "shop"`, `"stream": "file"`, `"refused_pushes": {`, `"429": 7`,
		`"dropped_entries": {`, `"too_old": 2`, `"failing": true`, `"queue_limit_bytes": 6291456`, `"p99": 0.2`} {
		if !strings.Contains(body, field) {
			t.Errorf("status.json lacks %s", field)
		}
	}

	_, _, body = get(t, srv.URL+"/status.json?tenant=acme&app=shop")
	rep = StatusReport{}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Sources) != 2 || len(rep.Tenants) != 1 || rep.Tenants[0].Tenant != "acme" || rep.Filter != (Filter{Tenant: "acme", App: "shop"}) {
		t.Errorf("tenant=acme&app=shop: %+v", rep)
	}
	_, _, body = get(t, srv.URL+"/status.json?app=blog")
	rep = StatusReport{}
	_ = json.Unmarshal([]byte(body), &rep)
	if len(rep.Sources) != 1 || len(rep.Tenants) != 1 || rep.Tenants[0].Tenant != "globex" {
		t.Errorf("app=blog: %d sources, tenants %+v", len(rep.Sources), rep.Tenants)
	}
}

// The page shows each source with its labels, state and lag, each tenant's
// queue, latency and refusals, Loki's reachability, and the filter; names
// are escaped; nothing is fetched from elsewhere.
func TestStatusPageRendering(t *testing.T) {
	var b bytes.Buffer
	if err := RenderStatus(&b, fixture(), Filter{}, "page"); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		`<title>podtail status · web-1</title>`,
		`<select name="tenant" id="f-tenant">`, `<option value="spammer">spammer</option>`, `<option value="blog">blog</option>`,
		`id="loki-state">reachable</div>`,
		// The file's row: labels, lag in bytes and seconds.
		`data-key="file:/logs#fp" data-kind="file" data-tenant="acme" data-app="shop" data-version="v1" data-stream="file" data-state="reading" data-lag-bytes="1000" data-lag-seconds="1.500"`,
		`<td class="n lag">1000 B</td>`, `<td class="n lag-s">1.5 s</td>`, `<td class="n read">8.8 KiB</td>`,
		`<td class="driver">k8s-file</td>`, `<td class="stream">stdout&#43;stderr</td>`,
		// The refused tenant: tagged, its refusals by reason, Loki's words.
		`<span class="tag bad">refused</span>`, `pushes: 429 × 7`, `entries dropped: too_old × 2`,
		`HTTP 429: Ingestion rate limit exceeded for user spammer`, `(2 s ago)`,
		`<td class="n">42 s</td>`, // its oldest unacked entry
		`12 ms / 10 ms / 200 ms`,  // acme's push latency
		// Escaped, never markup.
		`&lt;script&gt;alert(1)&lt;/script&gt;`,
		`<link rel="stylesheet" href="status/status.css">`, `<script src="status/status.js"></script>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("a container name is rendered as markup")
	}
	// Offline: no reference to anything but this server's own files.
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if strings.Contains(m[1], "//") {
			t.Errorf("the page refers to %s", m[1])
		}
	}
	for _, f := range []string{"status/status.css", "status/status.js"} {
		b, _ := statusFiles.ReadFile(f)
		if regexp.MustCompile(`https?://|@import|url\(`).Match(b) {
			t.Errorf("%s refers to something outside podtail", f)
		}
	}

	// Filtered: only acme's shop; the choice shown selected; the JSON link
	// keeps the filter.
	b.Reset()
	if err := RenderStatus(&b, fixture(), Filter{Tenant: "acme", App: "shop"}, "page"); err != nil {
		t.Fatal(err)
	}
	page = b.String()
	if n := strings.Count(page, `<tr class="source`); n != 2 {
		t.Errorf("filtered page has %d source rows, want 2", n)
	}
	for _, want := range []string{`<option value="acme" selected>acme</option>`, `<option value="shop" selected>shop</option>`,
		`href="status.json?app=shop&amp;tenant=acme"`, `of 4 · 1 behind · 0 with an error`} {
		if !strings.Contains(page, want) {
			t.Errorf("filtered page lacks %s", want)
		}
	}
	if strings.Contains(page, `data-tenant="spammer"`) || strings.Contains(page, `<option value="blog"`) {
		t.Error("the filtered page shows another tenant's rows, or another tenant's applications to choose from")
	}

	// The part the script refreshes is the page's main, alone.
	b.Reset()
	if err := RenderStatus(&b, fixture(), Filter{}, "main"); err != nil {
		t.Fatal(err)
	}
	if main := b.String(); !strings.HasPrefix(main, `<section id="summary"`) || strings.Contains(main, "<html") || !strings.Contains(main, `id="sources"`) {
		t.Errorf("part main: %.200s", main)
	}
}

func TestFormats(t *testing.T) {
	for in, want := range map[float64]string{0: "0 s", 0.0004: "0.4 ms", 0.0016: "1.6 ms", 0.25: "250 ms", 1.5: "1.5 s", 42.4: "42 s", 184: "3m04s", 7500: "2h05m"} {
		if got := fmtSeconds(in); got != want {
			t.Errorf("fmtSeconds(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 6 << 20: "6.0 MiB", 3 << 30: "3.00 GiB"} {
		if got := fmtBytes(in); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", in, got, want)
		}
	}
	if got := fmtCounts(map[string]int64{"503": 1, "429": 12, "network": 1}); got != "429 × 12, 503 × 1, network × 1" {
		t.Errorf("fmtCounts = %q", got)
	}
}
