package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podtail/podtail/pkg/loki"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/server"
	"github.com/podtail/podtail/pkg/source"
)

// The report puts the sources and the sink together: a row per tenant
// either knows, podtail's own refusals (limits) beside Loki's, and on the
// sources of a tenant Loki refuses, Loki's answer.
func TestStatusReport(t *testing.T) {
	now := time.Now()
	guards, err := pipeline.NewLimits(pipeline.LimitsConfig{Tenants: []string{"acme", "spammer"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srcs := []source.Status{
		{Key: "container:1", Kind: source.KindContainer, Container: "shop", Tenant: "acme", App: "shop", Version: "v1", Stream: "stdout+stderr",
			LogDriver: "k8s-file", State: source.StateReading, Read: 100, Acked: 100},
		{Key: "container:2", Kind: source.KindContainer, Container: "spam", Tenant: "spammer", App: "spam", State: source.StateReading,
			Read: 50, LagBytes: 50, Lag: 3 * time.Second},
		{Key: "container:3", Kind: source.KindContainer, Container: "evil", Tenant: "evil", State: source.StateReading,
			Error: "tenant evil is not in limits.tenants: its lines are dropped (tenant_not_allowed)"},
	}
	st := loki.Stats{URL: "http://loki/loki/api/v1/push", Reachable: true, Checked: now, LastContact: now, QueueLimit: 1 << 20,
		Tenants: []loki.TenantStats{
			{Tenant: "acme", Pushes: 3, EntriesSent: 10, P50: 10 * time.Millisecond, LastOK: now},
			{Tenant: "spammer", Pushes: 4, QueuedBytes: 700, Refused: map[string]int64{"429": 4}, Failing: true,
				LastError: "HTTP 429: Ingestion rate limit exceeded", LastErrorAt: now},
		}}
	rep := statusReport(now, "h", srcs, st, guards, map[string]map[string]int64{"evil": {"tenant_not_allowed": 9}})
	if rep.Loki.Reachable == nil || !*rep.Loki.Reachable || rep.Loki.QueueLimitBytes != 1<<20 {
		t.Errorf("loki: %+v", rep.Loki)
	}
	if len(rep.Tenants) != 3 || rep.Tenants[0].Tenant != "acme" || rep.Tenants[1].Tenant != "evil" || rep.Tenants[2].Tenant != "spammer" {
		t.Fatalf("tenants: %+v", rep.Tenants)
	}
	acme, evil, spammer := rep.Tenants[0], rep.Tenants[1], rep.Tenants[2]
	if !acme.Allowed || acme.Sources != 1 || acme.PushLatency.P50 != 0.01 || acme.Failing {
		t.Errorf("acme: %+v", acme)
	}
	if evil.Allowed || evil.DroppedEntries["tenant_not_allowed"] != 9 || evil.Sources != 1 {
		t.Errorf("evil: %+v", evil)
	}
	if !spammer.Failing || spammer.RefusedPushes["429"] != 4 || spammer.QueuedBytes != 700 {
		t.Errorf("spammer: %+v", spammer)
	}
	if e := rep.Sources[1].LastError; e != "Loki refuses tenant spammer's pushes: HTTP 429: Ingestion rate limit exceeded" {
		t.Errorf("spammer's source: %q", e)
	}
	if rep.Sources[0].LastError != "" || rep.Sources[1].LagSeconds != 3 || !strings.Contains(rep.Sources[2].LastError, "limits.tenants") {
		t.Errorf("sources: %+v", rep.Sources)
	}
	if rep.Loki.Checked == nil || rep.Tenants[0].LastErrorAt != nil {
		t.Error("times: a zero time must be absent, a set one present")
	}
}

// podtail's own limits' drops are read from the metrics it keeps; a drop
// stage's are not refusals.
func TestGuardDrops(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := source.NewMetrics(reg)
	m.Dropped().WithLabelValues("evil", pipeline.DropTenantNotAllowed).Add(3)
	m.Dropped().WithLabelValues("acme", "debug_lines").Add(5) // a drop stage's reason
	got := guardDrops(m.Dropped())
	if len(got) != 1 || got["evil"][pipeline.DropTenantNotAllowed] != 3 {
		t.Errorf("guard drops %v", got)
	}
	if testutil.CollectAndCount(m.Dropped()) != 2 {
		t.Error("setup")
	}
}

// podtail targets --from reads a running podtail's /status.json: a table,
// or JSON lines with --json; its filter goes to the server.
func TestTargetsFrom(t *testing.T) {
	yes := true
	rep := &server.StatusReport{Time: time.Now(), Loki: server.LokiStatus{URL: "http://loki", Reachable: &yes},
		Tenants: []server.TenantStatus{{Tenant: "spammer", Allowed: true, Failing: true, LastError: "HTTP 429: slow down"}},
		Sources: []server.SourceStatus{
			{Key: "container:1", Kind: "container", Container: "shop-1", Tenant: "acme", Application: "shop", Version: "v1", Stream: "stdout+stderr",
				LogDriver: "k8s-file", State: "reading", BytesRead: 10, BytesAcked: 10},
			{Key: "file:x", Kind: "file", Path: "/logs/spam.log", Tenant: "spammer", Stream: "file", State: "reading", BytesRead: 7, LagBytes: 7, LagSeconds: 2},
		}}
	p := &server.StatusProvider{}
	p.Set(func(context.Context) (*server.StatusReport, error) { return rep, nil })
	mux := http.NewServeMux()
	server.WithStatus(p)(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var out bytes.Buffer
	if err := targetsFrom(context.Background(), &out, strings.TrimPrefix(srv.URL, "http://"), server.Filter{}, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SOURCE", "LAG (S)", "shop-1", "acme", "k8s-file", "/logs/spam.log", "2.0",
		"loki http://loki: reachable", "tenant spammer: Loki refuses its pushes: HTTP 429: slow down"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := targetsFrom(context.Background(), &out, srv.URL+"/status", server.Filter{Tenant: "acme"}, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var s server.SourceStatus
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &s) != nil || s.Container != "shop-1" {
		t.Errorf("--json --tenant acme: %q", out.String())
	}

	// A podtail without server.status says 404: the error says what to do.
	off := httptest.NewServer(http.NotFoundHandler())
	defer off.Close()
	if err := targetsFrom(context.Background(), &out, off.URL, server.Filter{}, false); err == nil || !strings.Contains(err.Error(), "server.status") {
		t.Errorf("against a podtail without the status: %v", err)
	}
}

func TestStatusURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9080":                    "http://127.0.0.1:9080/status.json",
		"http://h:9080/":                    "http://h:9080/status.json",
		"http://h:9080/status":              "http://h:9080/status.json",
		"https://proxy/podtail/status.json": "https://proxy/podtail/status.json",
	} {
		if got, err := statusURL(in, server.Filter{}); err != nil || got != want {
			t.Errorf("statusURL(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if got, _ := statusURL("h:1", server.Filter{Tenant: "a b", App: "x"}); got != "http://h:1/status.json?app=x&tenant=a+b" {
		t.Errorf("with a filter: %s", got)
	}
	if _, err := statusURL("http://", server.Filter{}); err == nil {
		t.Error("no host accepted")
	}
}
