package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
)

// serveTap runs a server with the tap (nil: server.tap off) until the test
// ends, or until the returned stop is called.
func serveTap(t *testing.T, tap *pipeline.Tap) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), nil, zap.NewNop(), WithTap(ctx, tap))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return s.Addr(), stop
}

// tapClient reads a tap's stream line by line.
type tapClient struct {
	t    *testing.T
	resp *http.Response
	sc   *bufio.Scanner
}

func openTap(t *testing.T, addr, query string) *tapClient {
	t.Helper()
	resp, err := http.Get("http://" + addr + TapPath + "?" + query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s?%s: %s: %s", TapPath, query, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type %q", ct)
	}
	return &tapClient{t: t, resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// next is the stream's next line, decoded; it fails the test at the end of
// the stream.
func (c *tapClient) next() TapRecord {
	c.t.Helper()
	if !c.sc.Scan() {
		c.t.Fatalf("the tap's stream ended: %v", c.sc.Err())
	}
	var r TapRecord
	if err := json.Unmarshal(c.sc.Bytes(), &r); err != nil {
		c.t.Fatalf("%q: %v", c.sc.Text(), err)
	}
	return r
}

// waitListening waits until tap has n listeners (the handler has
// registered its client).
func waitListening(t *testing.T, tap *pipeline.Tap, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for tap.Listeners() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d tap listeners, want %d", tap.Listeners(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type ackAll struct{}

func (ackAll) Consume(_ context.Context, es []pipeline.Entry) (int, error) {
	for _, e := range es {
		e.Ack.Ack(e.Pos)
	}
	return len(es), nil
}

// stream is a source's Stream of tenant/app, tapped by tap.
func stream(tap *pipeline.Tap, tenant, app string) *pipeline.Stream {
	return pipeline.NewStream(pipeline.StreamConfig{
		Tenant:   tenant,
		Labels:   map[string]string{"tenant": tenant, "application": app},
		Metadata: []pipeline.Label{{Name: "container", Value: app + "-1"}},
	}, nil, pipeline.Sink{Consumer: ackAll{}, Tap: tap})
}

func send(t *testing.T, s *pipeline.Stream, at time.Time, line string) {
	t.Helper()
	ctx := context.Background()
	if err := s.Send(ctx, at, line, 1, "stream", "stdout"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// The tap is served only when server.tap gives the server one.
func TestTapOnlyWhenEnabled(t *testing.T) {
	addr, _ := serveTap(t, nil)
	resp, err := http.Get("http://" + addr + TapPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("server.tap off: %s answered %d, want 404", TapPath, resp.StatusCode)
	}
}

// A client asking for an application's entries gets a first line saying
// so, then those entries as they pass, with their labels, metadata and
// time, and nothing of other applications.
func TestTapEndpointStreamsEntries(t *testing.T) {
	tap := pipeline.NewTap()
	addr, _ := serveTap(t, tap)
	c := openTap(t, addr, "app=shop&tenant=acme")
	if r := c.next(); r.Listening == nil || *r.Listening != (TapListening{Tenant: "acme", App: "shop", Point: "shipped", Rate: DefaultTapRate}) {
		t.Fatalf("first line %+v, want what it listens to", r)
	}
	waitListening(t, tap, 1)
	shop, cart := stream(tap, "acme", "shop"), stream(tap, "acme", "cart")
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	start := time.Now()
	send(t, cart, at, "not shown")
	send(t, shop, at, "a shop line")
	r := c.next()
	if time.Since(start) > time.Second {
		t.Errorf("the entry took %s to arrive", time.Since(start))
	}
	want := TapEntry{Time: at, Point: "shipped", Tenant: "acme", Line: "a shop line",
		Labels:   map[string]string{"tenant": "acme", "application": "shop", "stream": "stdout"},
		Metadata: map[string]string{"container": "shop-1"}}
	if r.Listening != nil || r.Missed != nil || fmt.Sprint(r.TapEntry) != fmt.Sprint(want) {
		t.Errorf("got %+v\nwant %+v", r, want)
	}
}

// A query the tap cannot serve is refused, saying why; so is a client past
// the bound, and any method but GET.
func TestTapEndpointRefuses(t *testing.T) {
	tap := pipeline.NewTap()
	addr, _ := serveTap(t, tap)
	for _, q := range []string{"stage=-1", "stage=x", "rate=-5"} {
		resp, err := http.Get("http://" + addr + TapPath + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), strings.Split(q, "=")[0]) {
			t.Errorf("%s: %d %q, want 400 naming the parameter", q, resp.StatusCode, b)
		}
	}
	resp, err := http.Post("http://"+addr+TapPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	for i := 0; i < maxTapClients; i++ {
		openTap(t, addr, "").next()
	}
	resp, err = http.Get("http://" + addr + TapPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("client %d: %d, want 503", maxTapClients+1, resp.StatusCode)
	}
}

// Entries beyond the rate a client asked for are not sent, and counted in
// a "missed" line.
func TestTapEndpointReportsMissed(t *testing.T) {
	tap := pipeline.NewTap()
	addr, _ := serveTap(t, tap)
	c := openTap(t, addr, "rate=1&stage=0")
	if r := c.next(); r.Listening == nil || r.Listening.Point != "before the stages" || r.Listening.Rate != 1 {
		t.Fatalf("first line %+v", r)
	}
	waitListening(t, tap, 1)
	s := stream(tap, "acme", "shop")
	for i := 0; i < 10; i++ {
		send(t, s, time.Now(), fmt.Sprint("line ", i))
	}
	var got []string
	for {
		r := c.next()
		if r.Missed != nil {
			if r.Missed.OverRate < 1 || r.Missed.Slow != 0 {
				t.Errorf("missed %+v, want some over the rate", *r.Missed)
			}
			break
		}
		got = append(got, r.Line)
	}
	if len(got) < 1 || len(got) > 2 || got[0] != "line 0" {
		t.Errorf("got %q, want line 0 (and at most one more: the rate's second may have turned)", got)
	}
}

// When the collector stops (the server's context ends), a tap's stream ends
// and the server stops at once, though the client still reads.
func TestTapEndsWithTheServer(t *testing.T) {
	tap := pipeline.NewTap()
	addr, stop := serveTap(t, tap)
	c := openTap(t, addr, "")
	c.next()
	waitListening(t, tap, 1)
	start := time.Now()
	stop()
	if d := time.Since(start); d > time.Second {
		t.Errorf("the server took %s to stop with a tap open", d)
	}
	if c.sc.Scan() {
		t.Errorf("after the stop: %q", c.sc.Text())
	}
	waitListening(t, tap, 0)
}
