package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/server"
)

// The tap's address: server.listen as configured (an unspecified host is
// this one), the filter in the query, no stage unless asked (as shipped).
func TestTapURL(t *testing.T) {
	for _, c := range []struct {
		listen string
		o      tapOpts
		want   string
	}{
		{"127.0.0.1:9080", tapOpts{rate: 1000}, "http://127.0.0.1:9080/tap?rate=1000"},
		{":9080", tapOpts{app: "shop", rate: 0}, "http://127.0.0.1:9080/tap?app=shop&rate=0"},
		{"0.0.0.0:9080", tapOpts{tenant: "acme", app: "a b", stageSet: true, rate: 5}, "http://127.0.0.1:9080/tap?app=a+b&rate=5&stage=0&tenant=acme"},
		{"[::]:9080", tapOpts{stage: 2, stageSet: true, rate: 1}, "http://127.0.0.1:9080/tap?rate=1&stage=2"},
		{"[::1]:9080", tapOpts{rate: 1}, "http://[::1]:9080/tap?rate=1"},
		{"http://podtail.local:9080/", tapOpts{rate: 1}, "http://podtail.local:9080/tap?rate=1"},
	} {
		got, err := tapURL(c.listen, c.o)
		if err != nil || got != c.want {
			t.Errorf("%s %+v: %q, %v; want %q", c.listen, c.o, got, err, c.want)
		}
	}
	for _, o := range []tapOpts{{stage: -1, stageSet: true}, {rate: -1}} {
		if _, err := tapURL("127.0.0.1:9080", o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if _, err := tapURL("9080", tapOpts{}); err == nil {
		t.Error("a port alone: no error")
	}
}

// A readable entry is one line: time, labels, line, metadata; a dropped
// one says where and why; log content cannot reach the terminal as
// control characters.
func TestReadableTap(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	e := server.TapEntry{Time: at, Point: "shipped", Tenant: "acme",
		Labels:   map[string]string{"tenant": "acme", "application": "shop"},
		Metadata: map[string]string{"container": "shop-1", "caller": "a.go:1"},
		Line:     "panic:\n\tgoroutine 1\x1b[2J\u202eevil"}
	got := readableTap(&e)
	want := at.Local().Format("2006-01-02T15:04:05.000000000Z07:00") +
		` {application="shop", tenant="acme"} panic:\n` + "\t" + `goroutine 1\x1b[2J\u202eevil  {caller="a.go:1", container="shop-1"}` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	e.Dropped, e.Point, e.Metadata, e.Line = "noise", "after stage 2 of 3", nil, "x"
	if got := readableTap(&e); !strings.HasSuffix(got, ` {application="shop", tenant="acme"} [dropped after stage 2 of 3: noise] x`+"\n") {
		t.Errorf("dropped: %q", got)
	}
}

// tapBuffer is a bytes.Buffer written by tap and read by the test.
type tapBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *tapBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *tapBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type tapAckAll struct{}

func (tapAckAll) Consume(_ context.Context, es []pipeline.Entry) (int, error) {
	for _, e := range es {
		e.Ack.Ack(e.Pos)
	}
	return len(es), nil
}

// podtail tap against a running server: the first line on stderr says what
// it shows, then an application's entries on stdout as they pass, one line
// each (or the server's JSON); Ctrl-C ends it without error, podtail
// stopping ends it with one, and a podtail without server.tap is named.
func TestTapCommand(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		cfg := config.Default()
		cfg.Server.Tap = true
		tp := newTap(&cfg)
		srvCtx, stopServer := context.WithCancel(context.Background())
		srv, err := server.Listen("127.0.0.1:0", prometheus.NewRegistry(), nil, zap.NewNop(), server.WithTap(srvCtx, tp))
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Run(srvCtx) }()

		var stdout, stderr tapBuffer
		ctx, interrupt := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- tap(ctx, tapOpts{listen: srv.Addr(), app: "shop", rate: 1000, json: asJSON}, &stdout, &stderr)
		}()
		tapEventually(t, func() bool { return tp.Listeners() == 1 })
		if got := stderr.String(); !strings.Contains(got, "podtail tap: application shop, shipped, from "+srv.Addr()) {
			t.Errorf("stderr: %q", got)
		}
		sink := pipeline.Sink{Consumer: tapAckAll{}, Tap: tp}
		shop := pipeline.NewStream(pipeline.StreamConfig{Tenant: "acme", Labels: map[string]string{"tenant": "acme", "application": "shop"}}, nil, sink)
		cart := pipeline.NewStream(pipeline.StreamConfig{Tenant: "acme", Labels: map[string]string{"tenant": "acme", "application": "cart"}}, nil, sink)
		at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
		for _, s := range []*pipeline.Stream{cart, shop} {
			if err := s.Send(context.Background(), at, "hello from the "+map[bool]string{true: "shop", false: "cart"}[s == shop], 1); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		tapEventually(t, func() bool { return strings.Contains(stdout.String(), "hello from the shop") })
		out := stdout.String()
		if strings.Contains(out, "cart") || strings.Count(out, "\n") != 1 {
			t.Errorf("stdout: %q, want the shop's one line", out)
		}
		if asJSON {
			var e server.TapEntry
			if err := json.Unmarshal([]byte(out), &e); err != nil || !e.Time.Equal(at) || e.Labels["application"] != "shop" {
				t.Errorf("--json: %q: %+v, %v", out, e, err)
			}
		} else if !strings.Contains(out, `{application="shop", tenant="acme"} hello from the shop`) {
			t.Errorf("stdout: %q", out)
		}

		if asJSON {
			interrupt() // Ctrl-C
			if err := <-done; err != nil {
				t.Errorf("after Ctrl-C: %v", err)
			}
		} else {
			stopServer() // podtail stops
			if err := <-done; err == nil || !strings.Contains(err.Error(), "ended the tap") {
				t.Errorf("after podtail stopped: %v", err)
			}
		}
		stopServer()
		interrupt()
		<-served
	}

	// A podtail without server.tap.
	srv, err := server.Listen("127.0.0.1:0", prometheus.NewRegistry(), nil, zap.NewNop(), server.WithTap(context.Background(), nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Run(ctx) }()
	err = tap(ctx, tapOpts{listen: srv.Addr(), rate: 1}, &tapBuffer{}, &tapBuffer{})
	if err == nil || !strings.Contains(err.Error(), "server.tap: true") {
		t.Errorf("without server.tap: %v", err)
	}
}

// tapEventually waits up to 5 s for cond.
func tapEventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
