// Package server is podtail's own HTTP endpoint: /metrics (Prometheus text),
// /ready (200 once discovery is connected and the sink is running) and
// /healthz (200 while the process serves).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Check says whether one part is ready, and if not, why.
type Check func() error

// Server serves the endpoints.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	log    *zap.Logger
	checks map[string]Check
}

// Option adds to what the server serves.
type Option func(mux *http.ServeMux)

// WithPprof serves Go's profiling handlers under /debug/pprof/ when enabled
// (server.pprof), registered on this server's own mux, not the default one.
func WithPprof(enabled bool) Option {
	return func(mux *http.ServeMux) {
		if !enabled {
			return
		}
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}

// Listen binds addr now, so a taken port fails start-up with a clear error
// instead of later in the background.
func Listen(addr string, gatherer prometheus.Gatherer, checks map[string]Check, log *zap.Logger, opts ...Option) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server.listen %s: %w", addr, err)
	}
	s := &Server{ln: ln, log: log, checks: checks}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/ready", s.ready)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	for _, o := range opts {
		o(mux)
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Addr is the address actually bound (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	var errs []error
	for name, c := range s.checks {
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
		<-errc
		return nil
	}
}
