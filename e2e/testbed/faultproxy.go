package testbed

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// Fault is what the FaultProxy does with one push.
type Fault int

const (
	// Pass forwards the push to Loki and returns Loki's answer.
	Pass Fault = iota
	// TooMany answers 429 without forwarding, as Loki's rate limiter does.
	TooMany
	// Unavailable answers 503 without forwarding, as Loki does while an
	// ingester is not ready.
	Unavailable
	// Reset drops the connection before forwarding: the push never arrived.
	Reset
	// LostAnswer forwards the push, so Loki stores it, then drops the
	// connection instead of answering: the client cannot know it arrived.
	LostAnswer
)

func (f Fault) String() string {
	return [...]string{"pass", "429", "503", "reset", "lost-answer"}[f]
}

// Rule picks the fault for the n-th push (from 0) of tenant.
type Rule func(tenant string, n uint64) Fault

// FaultProxy stands in front of a real Loki and injects the faults a real
// Loki cannot be made to produce on demand. Everything it forwards goes to
// Loki byte for byte, and every answer it makes up is the one Loki would
// give, so the client under test speaks to it exactly as to Loki.
type FaultProxy struct {
	URL string

	target string
	srv    *http.Server
	ln     net.Listener
	rule   atomic.Pointer[Rule]
	pushes atomic.Uint64
	seen   atomic.Pointer[Observer]

	mu     sync.Mutex
	counts map[Fault]int
}

// StartFaultProxy listens on a free local port and forwards to lokiURL.
func StartFaultProxy(lokiURL string) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	p := &FaultProxy{URL: "http://" + ln.Addr().String(), target: lokiURL, ln: ln, counts: map[Fault]int{}}
	p.SetRule(func(string, uint64) Fault { return Pass })
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Observer learns of every push Loki acknowledged through the proxy, and
// when (as the proxy got Loki's 2xx).
type Observer func(tenant string, req *push.PushRequest, at time.Time)

// Observe sets the observer.
func (p *FaultProxy) Observe(o Observer) { p.seen.Store(&o) }

// SetRule replaces the rule; pushes already under way keep theirs.
func (p *FaultProxy) SetRule(r Rule) { p.rule.Store(&r) }

// Counts returns how many pushes met each fault so far.
func (p *FaultProxy) Counts() map[Fault]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[Fault]int, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Close stops the proxy.
func (p *FaultProxy) Close() { _ = p.srv.Close() }

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	fault := Pass
	if r.URL.Path == "/loki/api/v1/push" {
		fault = (*p.rule.Load())(r.Header.Get("X-Scope-OrgID"), p.pushes.Add(1)-1)
		p.mu.Lock()
		p.counts[fault]++
		p.mu.Unlock()
	}
	switch fault {
	case TooMany:
		http.Error(w, "Ingestion rate limit exceeded for user (injected by the test's fault proxy)", http.StatusTooManyRequests)
		return
	case Unavailable:
		http.Error(w, "empty ring (injected by the test's fault proxy)", http.StatusServiceUnavailable)
		return
	case Reset:
		reset(w)
		return
	}
	resp, err := forward(r, p.target, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if fault == LostAnswer {
		reset(w)
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if o := p.seen.Load(); o != nil && fault == Pass && resp.StatusCode/100 == 2 && r.URL.Path == "/loki/api/v1/push" {
		at := time.Now()
		if raw, err := snappy.Decode(nil, body); err == nil {
			var req push.PushRequest
			if req.Unmarshal(raw) == nil {
				(*o)(r.Header.Get("X-Scope-OrgID"), &req, at)
			}
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func forward(r *http.Request, target string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	return http.DefaultClient.Do(req)
}

// reset closes the client's connection with a TCP RST (linger 0), the way a
// crashing Loki or a load balancer dropping it looks to the client.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("fault proxy: connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
