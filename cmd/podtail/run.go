package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/loki"
	"github.com/podtail/podtail/pkg/podman"
	"github.com/podtail/podtail/pkg/server"
	"github.com/podtail/podtail/pkg/source"
	"github.com/podtail/podtail/pkg/source/positions"
)

func newRunCmd(load loader) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Collect containers' output and ship it to Loki",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd.Flags())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return run(ctx, cfg)
		},
	}
	addKeyFlags(cmd.Flags(), "podman.socket", "loki.url", "data_dir", "server.listen", "log.level", "log.format")
	return cmd
}

// run collects until ctx ends, then shuts down in two stages: stop reading,
// deliver what was read (bounded by shutdown_timeout), save positions.
func run(ctx context.Context, cfg *config.Config) error {
	log, err := newLogger(cfg.Log)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	defer func() { _ = log.Sync() }()
	started := time.Now()

	store, err := positions.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	api, err := podman.Connect(ctx, cfg.Podman.Socket)
	if err != nil {
		return err
	}
	log.Info("connected to podman", zap.String("socket", api.URI()))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sink, err := loki.New(loki.Config{
		URL:          cfg.Loki.URL,
		BatchSize:    int(cfg.Loki.BatchSize),
		BatchWait:    cfg.Loki.BatchWait,
		Timeout:      cfg.Loki.Timeout,
		MinBackoff:   cfg.Loki.MinBackoff,
		MaxBackoff:   cfg.Loki.MaxBackoff,
		MaxRetryTime: cfg.Loki.MaxRetryTime,
		QueueBytes:   int64(cfg.Loki.QueueBytes),
		UserAgent:    "podtail/" + version,
	}, log.Named("loki"), reg)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	probeLoki(ctx, cfg.Loki.URL, log)

	disc := discovery.New(api, discovery.NewMapper(mapConfig(cfg)), discovery.Config{
		ReconcileInterval: cfg.Podman.ReconcileInterval,
		ReconnectBackoff:  cfg.Podman.ReconnectBackoff,
		Started:           started,
	}, log.Named("discovery"))

	srv, err := server.Listen(cfg.Server.Listen, reg, map[string]server.Check{
		"discovery": func() error {
			if !disc.Connected() {
				return errors.New("not connected to podman")
			}
			return nil
		},
		"loki": func() error {
			if !sink.Ready() {
				return errors.New("sink not running")
			}
			return nil
		},
	}, log)
	if err != nil {
		return err
	}
	log.Info("podtail running", zap.String("version", version), zap.String("loki", cfg.Loki.URL),
		zap.String("data_dir", cfg.DataDir), zap.String("listen", srv.Addr()))

	// Three lifetimes: readers (stage one), the sink (stage two), and the
	// background helpers that must outlive both (server, positions).
	readCtx, stopReading := context.WithCancel(context.Background())
	sinkCtx, stopSink := context.WithCancel(context.Background())
	bgCtx, stopBg := context.WithCancel(context.Background())
	defer stopReading()
	defer stopSink()
	defer stopBg()

	var bg sync.WaitGroup
	goRun := func(wg *sync.WaitGroup, f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	goRun(&bg, func() {
		if err := srv.Run(bgCtx); err != nil {
			log.Error("http server stopped", zap.Error(err))
		}
	})
	goRun(&bg, func() {
		store.Run(bgCtx, 250*time.Millisecond, func(err error) { log.Error("saving positions", zap.Error(err)) })
	})
	var sinkWG sync.WaitGroup
	goRun(&sinkWG, func() { _ = sink.Run(sinkCtx) })

	sched := source.NewScheduler(readCtx, store, sink, cfg.Discovery.ExistingFrom, source.NewMetrics(reg), log.Named("source"))
	up := make(chan []discovery.Target, 1)
	var readers sync.WaitGroup
	goRun(&readers, func() { _ = disc.Run(readCtx, up) })
	goRun(&readers, func() {
		for {
			select {
			case <-readCtx.Done():
				return
			case set := <-up:
				sched.Sync(set)
			}
		}
	})

	<-ctx.Done()
	log.Info("stopping: no more reading; delivering what was read", zap.Duration("deadline", cfg.ShutdownTimeout))
	stopReading()
	readers.Wait()
	sched.Wait()
	fctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	if err := sink.Flush(fctx); err != nil {
		log.Warn("not everything was delivered before shutdown_timeout; the rest is read again after restart", zap.Error(err))
	}
	cancel()
	stopSink()
	sinkWG.Wait()
	stopBg()
	bg.Wait()
	if err := store.Sync(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

func mapConfig(cfg *config.Config) discovery.MapConfig {
	return discovery.MapConfig{
		TenantLabel:   cfg.Discovery.TenantLabel,
		AppLabel:      cfg.Discovery.AppLabel,
		VersionLabel:  cfg.Discovery.VersionLabel,
		RequireTenant: cfg.Discovery.RequireTenant,
		DefaultTenant: cfg.Discovery.DefaultTenant,
		HostPrefix:    cfg.Files.HostPrefix,
	}
}

// probeLoki says at start-up, in one line, when Loki cannot be reached.
// It does not stop podtail: Loki may simply start later, and until it does
// lines wait on disk (backpressure), not in memory.
func probeLoki(ctx context.Context, url string, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/ready", nil)
	if err != nil {
		log.Error(fmt.Sprintf("loki.url %s: %v", url, err))
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Error(fmt.Sprintf("loki.url %s is unreachable: %v; collecting anyway, delivery retries until it answers", url, err))
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Warn(fmt.Sprintf("loki.url %s/ready answered %s; delivery retries until it is ready", url, resp.Status))
	}
}
