package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// Sink is a Loki push endpoint that decodes every request (snappy +
// protobuf PushRequest), counts what it holds and answers 204; with Forward
// set it first passes the request on to a real Loki and answers what Loki
// answered. Each tool run gets its own Sink, so counts never mix.
type Sink struct {
	URL string

	// Forward, when set, is a Loki base URL every push is also sent to.
	Forward string
	// OnEntry, when set, sees every entry after the request was accepted.
	OnEntry func(tenant, labels, line string, at time.Time)
	// From and To bound the entry times the workload holds; entries
	// outside are counted as not timed from their line.
	From, To time.Time

	entries, bytes, requests, failed atomic.Int64
	untimed, unleveled, noTenant     atomic.Int64
	last                             atomic.Int64 // unix ns of the last accepted request
	mu                               sync.Mutex
	streams                          map[string]struct{}
	tenants                          map[string]struct{}
	bad                              []string // a few entries that failed a check
	srv                              *http.Server
	ln                               net.Listener
	client                           *http.Client
	bufs                             sync.Pool
}

// StartSink listens on a free port of 127.0.0.1 and serves until Close.
func StartSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &Sink{
		URL:     "http://" + ln.Addr().String(),
		ln:      ln,
		streams: map[string]struct{}{},
		tenants: map[string]struct{}{},
		client:  &http.Client{Timeout: 30 * time.Second},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/loki/api/v1/push", s.push)
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops serving.
func (s *Sink) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

func (s *Sink) push(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	buf, _ := s.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer func() { buf.Reset(); s.bufs.Put(buf) }()
	if _, err := io.Copy(buf, r.Body); err != nil {
		s.failed.Add(1)
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	raw, err := snappy.Decode(nil, buf.Bytes())
	if err != nil {
		s.failed.Add(1)
		http.Error(w, "snappy: "+err.Error(), http.StatusBadRequest)
		return
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		s.failed.Add(1)
		http.Error(w, "protobuf: "+err.Error(), http.StatusBadRequest)
		return
	}
	tenant := r.Header.Get("X-Scope-OrgID")
	if s.Forward != "" {
		status, err := s.forward(r, tenant, buf.Bytes())
		if err != nil {
			s.failed.Add(1)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if status/100 != 2 {
			s.failed.Add(1)
			w.WriteHeader(status)
			return
		}
	}
	s.count(tenant, &req)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sink) forward(r *http.Request, tenant string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, s.Forward+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("forward to loki: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (s *Sink) count(tenant string, req *push.PushRequest) {
	now := time.Now()
	var n, b, untimed, unleveled int64
	for i := range req.Streams {
		st := &req.Streams[i]
		// `level="` matches podtail's log_level and Promtail's level label.
		leveled := strings.Contains(st.Labels, `level="`)
		for j := range st.Entries {
			e := &st.Entries[j]
			b += int64(len(e.Line))
			timed := s.From.IsZero() || !e.Timestamp.Before(s.From.Add(-time.Millisecond)) && !e.Timestamp.After(s.To.Add(time.Millisecond))
			if !timed {
				untimed++
			}
			if !timed || !leveled {
				s.sample(st.Labels, e)
			}
			if s.OnEntry != nil {
				s.OnEntry(tenant, st.Labels, e.Line, now)
			}
		}
		n += int64(len(st.Entries))
		if !leveled {
			unleveled += int64(len(st.Entries))
		}
	}
	s.mu.Lock()
	for i := range req.Streams {
		if _, ok := s.streams[req.Streams[i].Labels]; !ok {
			s.streams[strings.Clone(req.Streams[i].Labels)] = struct{}{}
		}
	}
	s.tenants[tenant] = struct{}{}
	s.mu.Unlock()
	if tenant == "" {
		s.noTenant.Add(n)
	}
	s.untimed.Add(untimed)
	s.unleveled.Add(unleveled)
	s.bytes.Add(b)
	s.requests.Add(1)
	s.last.Store(now.UnixNano())
	s.entries.Add(n) // last: a reader that sees the count sees the rest
}

// sample keeps a few entries that failed a check, to show what went wrong.
func (s *Sink) sample(labels string, e *push.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) >= 3 {
		return
	}
	line := e.Line
	if len(line) > 80 {
		line = line[:80] + "…"
	}
	s.bad = append(s.bad, fmt.Sprintf("%s %s %q", labels, e.Timestamp.UTC().Format(time.RFC3339Nano), line))
}

// Entries is how many entries were accepted so far.
func (s *Sink) Entries() int64 { return s.entries.Load() }

// Last is when the last accepted request arrived.
func (s *Sink) Last() time.Time { return time.Unix(0, s.last.Load()) }

// SinkStats is what a sink saw.
type SinkStats struct {
	Entries, Bytes, Requests, Failed int64
	// Untimed: entries whose time is not the line's ts; Unleveled: entries
	// in streams without a level label; NoTenant: pushed without X-Scope-OrgID.
	Untimed, Unleveled, NoTenant int64
	Streams, Tenants             int
	Samples                      []string // a few entries that failed a check
}

// Stats returns the counts so far.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SinkStats{
		Entries: s.entries.Load(), Bytes: s.bytes.Load(), Requests: s.requests.Load(), Failed: s.failed.Load(),
		Untimed: s.untimed.Load(), Unleveled: s.unleveled.Load(), NoTenant: s.noTenant.Load(),
		Streams: len(s.streams), Tenants: len(s.tenants), Samples: append([]string(nil), s.bad...),
	}
}
