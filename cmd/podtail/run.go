package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
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
		Long: `Collect the output and log files of Podman's containers (and of files.static
directories) and ship them to Loki, each tenant under its own X-Scope-OrgID.

Configuration comes from the file (--config, PODTAIL_CONFIG), then PODTAIL_*
environment variables (PODTAIL_LOKI_URL for loki.url), then the flags below;
every key, its default and its variable: podtail config keys; the effective
result: podtail config check. Positions are kept in data_dir and move only
when Loki has acknowledged the lines, so a restart loses and repeats nothing.

Signals: SIGTERM or SIGINT stop reading, deliver what was read (within
shutdown_timeout) and save positions; SIGHUP reloads the configuration (a bad
one is reported and the running one carries on).`,
		Example: `  # With the shipped configuration, Loki on this host:
  podtail run --config /etc/podtail/podtail.yaml

  # Loki elsewhere, rootless Podman of the current user, console logs:
  podtail run --loki.url http://loki.example:3100 \
    --podman.socket unix://$XDG_RUNTIME_DIR/podman/podman.sock --log.format console

  # Static directories only, no Podman (files.static in the file):
  PODTAIL_PODMAN_ENABLED=false podtail run --config static.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd.Flags())
			if err != nil {
				return err
			}
			lock, err := lockDataDir(cfg.DataDir) // for run's whole life: one podtail per data_dir
			if err != nil {
				return err
			}
			defer lock.Unlock()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return supervise(ctx, cfg, hup, func() (*config.Config, error) { return load(cmd.Flags()) })
		},
	}
	addKeyFlags(cmd.Flags(), "podman.socket", "loki.url", "data_dir", "server.listen", "log.level", "log.format")
	return cmd
}

// supervise runs the collector with cfg until ctx ends. On each signal from
// reload it loads the configuration again; a bad one is reported and the
// running collector carries on untouched, a good one replaces it: the old one
// shuts down as on SIGTERM (reading stops, what was read is delivered within
// shutdown_timeout, positions are saved) and a new one starts from those
// positions, so a reload neither loses nor repeats lines. Metrics start from
// zero after a reload, as after a restart.
func supervise(ctx context.Context, cfg *config.Config, reload <-chan os.Signal, load func() (*config.Config, error)) error {
	var prev *config.Config // to go back to if a reloaded configuration fails to start
	for {
		log, err := newLogger(cfg.Log)
		if err != nil {
			return exitError{code: 2, err: err}
		}
		genCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func(cfg *config.Config) { done <- run(genCtx, cfg, log) }(cfg)
		var next *config.Config
		for next == nil {
			select {
			case err := <-done:
				stop()
				if err != nil && prev != nil && ctx.Err() == nil {
					// Valid, but it could not start (a socket that is not
					// there, a port in use): the old one could.
					log.Error("SIGHUP: the new configuration failed to start; going back to the previous one", zap.Error(err))
					next, prev = prev, nil
					continue
				}
				return err
			case <-reload:
				c, err := load()
				if err != nil {
					log.Error("SIGHUP: the new configuration is not valid; carrying on with the running one", zap.Error(err))
					continue
				}
				if c.DataDir != cfg.DataDir {
					// The run holds data_dir's lock and its positions; moving
					// them under a running collector is a restart's job.
					log.Error("SIGHUP: data_dir cannot change on a reload (restart podtail for that); carrying on with the running configuration",
						zap.String("data_dir", cfg.DataDir), zap.String("new_data_dir", c.DataDir))
					continue
				}
				log.Info("SIGHUP: configuration reloaded; restarting the collector with it")
				next, prev = c, cfg
				stop()
				if err := <-done; err != nil {
					return fmt.Errorf("stopping for a reload: %w", err)
				}
			}
		}
		stop() // already called; for vet's lostcancel, which cannot see that
		_ = log.Sync()
		cfg = next
	}
}

// run collects until ctx ends, then shuts down in two stages: stop reading,
// deliver what was read (bounded by shutdown_timeout), save positions.
// log is the supervisor's: a second logger was a second sampler, 0.5 MB of
// counters.
//
// It builds the collector from the end of the data flow back to its start,
// so that each part exists before what feeds it: the sink (Loki); Podman
// discovery, and the HTTP server that reports on both; the sources and the
// scheduler, whose readers run each target through its pipeline into the
// sink; last, the discoverers that hand the scheduler its targets.
func run(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	defer func() { _ = log.Sync() }()
	started := time.Now()
	tuneRuntime(cfg, log)

	store, err := positions.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	if r := store.Recovered(); r != nil {
		log.Error("positions file damaged; kept aside, and every source is read again from its start: what Loki holds of it is not sent again",
			zap.String("file", store.Path()), zap.String("kept_as", r.Aside), zap.Error(r.Cause))
	}
	api, err := connectPodman(ctx, cfg, log)
	if err != nil {
		return err
	}
	rules := fileRules(cfg)
	reg := newRegistry()
	reg.MustRegister(store.Collectors()...)
	sink, err := newSink(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	disc := newDiscoverer(api, cfg, rules, started, log)
	status := newStatusProvider(cfg) // given its sources below, once they exist
	tap := newTap(cfg)               // server.tap; nil while off
	srv, err := listen(cfg, reg, disc, sink, status, log, server.WithTap(ctx, tap))
	if err != nil {
		return err
	}
	log.Info("podtail running", zap.String("version", version), zap.String("loki", cfg.Loki.URL),
		zap.String("data_dir", cfg.DataDir), zap.String("listen", srv.Addr()))

	lt := newLifetimes()
	defer lt.cancel()
	serve(lt, srv, store, log)
	startSink(lt, sink)

	src, err := openSources(ctx, lt, cfg, api, reg, log)
	if err != nil {
		return err
	}
	defer src.close()
	src.tap = tap
	sched := newScheduler(lt.readCtx, store, src.guards, sink, src, cfg, rules, reg, log)
	serveStatus(lt, status, sched, sink, src.guards, src.metrics.Dropped())
	discover(lt, cfg, disc, src, rules, sched, log)

	<-ctx.Done()
	return shutdown(lt, cfg, sched, sink, store, log)
}

// lifetimes are run's three: readers (stage one), the sink (stage two), and
// the background helpers that must outlive both (server, positions). Each is
// a context and the goroutines that live in it.
type lifetimes struct {
	readCtx, sinkCtx, bgCtx       context.Context
	stopReading, stopSink, stopBg context.CancelFunc
	readers, sinkWG, bg           sync.WaitGroup
}

func newLifetimes() *lifetimes {
	lt := &lifetimes{}
	lt.readCtx, lt.stopReading = context.WithCancel(context.Background())
	lt.sinkCtx, lt.stopSink = context.WithCancel(context.Background())
	lt.bgCtx, lt.stopBg = context.WithCancel(context.Background())
	return lt
}

// cancel ends all three without waiting, background first; run defers it
// for its early returns (shutdown has already ended them in order).
func (lt *lifetimes) cancel() {
	lt.stopBg()
	lt.stopSink()
	lt.stopReading()
}

// goRun runs f in a goroutine that wg counts.
func goRun(wg *sync.WaitGroup, f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }

// connectPodman connects to the Podman API; nil when podman.enabled is false.
func connectPodman(ctx context.Context, cfg *config.Config, log *zap.Logger) (*podman.Client, error) {
	if !cfg.Podman.Enabled {
		return nil, nil
	}
	api, err := podman.Connect(ctx, cfg.Podman.Socket)
	if err != nil {
		return nil, err
	}
	log.Info("connected to podman", zap.String("socket", api.URI()))
	return api, nil
}

// newRegistry is the registry of podtail's metrics, with Go's and the
// process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// newSink makes the Loki client that every line ends in (startSink starts
// it), and says at once when Loki cannot be reached.
func newSink(ctx context.Context, cfg *config.Config, reg *prometheus.Registry, log *zap.Logger) (*loki.Client, error) {
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
		Security:     cfg.Loki.Security(),
	}, log.Named("loki"), reg)
	if err != nil {
		return nil, exitError{code: 2, err: err}
	}
	probeLoki(ctx, cfg.Loki.URL, cfg.Loki.Security(), log)
	return sink, nil
}

// listen opens podtail's HTTP endpoint, ready when the discoverer (if any)
// is connected to Podman and the sink runs; with server.status, the status
// page from status (its sources come later: serveStatus).
func listen(cfg *config.Config, reg *prometheus.Registry, disc *discovery.Discoverer, sink *loki.Client, status *server.StatusProvider, log *zap.Logger, opts ...server.Option) (*server.Server, error) {
	return server.Listen(cfg.Server.Listen, reg, map[string]server.Check{
		"discovery": func() error {
			if disc != nil && !disc.Connected() {
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
	}, log, append([]server.Option{server.WithPprof(cfg.Server.Pprof), server.WithStatus(status)}, opts...)...)
}

// serve starts the background helpers: the HTTP server, and saving
// positions every second.
func serve(lt *lifetimes, srv *server.Server, store *positions.Store, log *zap.Logger) {
	goRun(&lt.bg, func() {
		if err := srv.Run(lt.bgCtx); err != nil {
			log.Error("http server stopped", zap.Error(err))
		}
	})
	goRun(&lt.bg, func() {
		store.Run(lt.bgCtx, time.Second, log)
	})
}

// startSink starts delivering to Loki.
func startSink(lt *lifetimes, sink *loki.Client) {
	goRun(&lt.sinkWG, func() { _ = sink.Run(lt.sinkCtx) })
}

// shutdown is run's two-stage stop, once its ctx has ended: readers first,
// then the sink, given shutdown_timeout to deliver what they read, then the
// background helpers, and positions are saved.
func shutdown(lt *lifetimes, cfg *config.Config, sched *source.Scheduler, sink *loki.Client, store *positions.Store, log *zap.Logger) error {
	log.Info("stopping: no more reading; delivering what was read", zap.Duration("deadline", cfg.ShutdownTimeout))
	lt.stopReading()
	lt.readers.Wait()
	sched.Wait()
	fctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	if err := sink.Flush(fctx); err != nil {
		log.Warn("not everything was delivered before shutdown_timeout; the rest is read again after restart", zap.Error(err))
	}
	cancel()
	lt.stopSink()
	lt.sinkWG.Wait()
	lt.stopBg()
	lt.bg.Wait()
	if err := store.Sync(); err != nil { // a reload goes on: the next run reads what was written
		log.Error("positions not saved at stop; the next start reads again from the last ones written, not sending again what Loki holds", zap.Error(err))
	}
	log.Info("stopped")
	return nil
}

// probeLoki says at start-up, in one line, when Loki cannot be reached.
// It does not stop podtail: Loki may simply start later, and until it does
// lines wait on disk (backpressure), not in memory. It goes through the
// pushes' TLS settings and credentials, so a certificate or gateway problem
// shows here too.
func probeLoki(ctx context.Context, url string, sec loki.Security, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rt, err := loki.NewTransport(sec, nil)
	if err != nil {
		log.Error(fmt.Sprintf("loki.url %s: %v", url, err))
		return
	}
	client := &http.Client{Transport: rt}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/ready", nil)
	if err != nil {
		log.Error(fmt.Sprintf("loki.url %s: %v", url, err))
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		log.Error(fmt.Sprintf("loki.url %s is unreachable: %v; collecting anyway, delivery retries until it answers", url, err))
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Warn(fmt.Sprintf("loki.url %s/ready answered %s; delivery retries until it is ready", url, resp.Status))
	}
}
