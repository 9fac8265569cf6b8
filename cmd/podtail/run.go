package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/journal"
	"github.com/podtail/podtail/pkg/loki"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/podman"
	"github.com/podtail/podtail/pkg/server"
	"github.com/podtail/podtail/pkg/source"
	"github.com/podtail/podtail/pkg/source/file"
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
func run(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	defer func() { _ = log.Sync() }()
	started := time.Now()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if cfg.MemoryLimit > 0 {
		setMemoryLimit(int64(cfg.MemoryLimit), int64(cfg.Loki.QueueBytes), log)
	}

	store, err := positions.Open(cfg.DataDir)
	if err != nil {
		return err
	}
	var api *podman.Client
	if cfg.Podman.Enabled {
		if api, err = podman.Connect(ctx, cfg.Podman.Socket); err != nil {
			return err
		}
		log.Info("connected to podman", zap.String("socket", api.URI()))
	}
	rules := fileRules(cfg)

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
		Security:     cfg.Loki.Security(),
	}, log.Named("loki"), reg)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	probeLoki(ctx, cfg.Loki.URL, cfg.Loki.Security(), log)

	var disc *discovery.Discoverer
	if api != nil {
		disc = discovery.New(api, discovery.NewMapper(mapConfig(cfg, rules)), discovery.Config{
			ReconcileInterval: cfg.Podman.ReconcileInterval,
			ReconnectBackoff:  cfg.Podman.ReconnectBackoff,
			Started:           started,
		}, log.Named("discovery"))
	}

	srv, err := server.Listen(cfg.Server.Listen, reg, map[string]server.Check{
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
	}, log, server.WithPprof(cfg.Server.Pprof))
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
		store.Run(bgCtx, time.Second, func(err error) { log.Error("saving positions", zap.Error(err)) })
	})
	var sinkWG sync.WaitGroup
	goRun(&sinkWG, func() { _ = sink.Run(sinkCtx) })

	// The catcher opens new containers' logs the moment conmon creates them,
	// so that a --rm container gone before its create event arrives is read.
	var catcher *source.Catcher
	var catchDir string
	if api != nil {
		if st, err := api.Storage(ctx); err == nil && st.DefaultLogPath("x") != "" {
			catcher = source.NewCatcher(log.Named("catcher"))
			catchDir = filepath.Join(cfg.Files.HostPrefix, st.ContainersDir())
		}
	}
	jrnl := journalOf(cfg, log)
	if jrnl.Watch != nil {
		defer jrnl.Watch.Close()
	}
	if jrnl.Maps != nil {
		goRun(&bg, func() { trimJournalMaps(bgCtx, jrnl.Maps) })
	}
	var spool *source.Spool
	if cfg.Spool.Enabled {
		if spool, err = source.OpenSpool(filepath.Join(cfg.DataDir, "spool"), log.Named("spool")); err != nil {
			return err
		}
	}
	srcMetrics := source.NewMetrics(reg)
	// The per-tenant guards sit in front of the sink: every source's
	// pipeline.Stream applies them.
	guards, err := pipeline.NewLimits(pipeline.LimitsConfig{
		MaxStreamsPerTenant: cfg.Limits.MaxStreamsPerTenant,
		MaxLabelValueBytes:  int(cfg.Limits.MaxLabelValueBytes),
		MaxLineBytes:        int(cfg.Limits.MaxLineBytes),
		DropLongLines:       cfg.Limits.LineTooLong == "drop",
		Tenants:             cfg.Limits.Tenants,
	}, reg, log.Named("limits"))
	if err != nil {
		return exitError{code: 2, err: err}
	}
	// One inotify watcher for every log directory (a watcher each cost a
	// goroutine with a 64 KiB buffer and three descriptors per directory).
	watch, err := file.NewWatcher(log.Named("source"))
	if err != nil {
		log.Warn("inotify unavailable; log directories are polled", zap.Duration("every", cfg.Files.PollInterval), zap.Error(err))
	} else {
		defer watch.Close()
	}
	sched := source.NewScheduler(readCtx, store, guards.Wrap(sink), source.Config{
		ExistingFrom: cfg.Discovery.ExistingFrom,
		Spool:        spool,
		Catcher:      catcher,
		Journal:      jrnl,
		Pipeline:     pipelineOf(cfg.Pipeline.Container),
		Files: &source.Files{
			Rules:        rules,
			Pipeline:     pipelineOf(cfg.Pipeline.Files),
			Multiline:    multilineOf(cfg.Pipeline.Files),
			MaxLineBytes: int(cfg.Limits.MaxLineBytes),
			Poll:         cfg.Files.PollInterval,
			Open:         file.NewLimiter(cfg.Files.MaxOpen),
			// As many of a tenant's directories read at once as there are
			// cores to parse with: more only hold buffers while Loki pushes back.
			Readers: file.NewReaders(max(2, runtime.GOMAXPROCS(0))),
			Watch:   watch,
			Metrics: file.NewMetrics(reg, srcMetrics.Dropped(), srcMetrics.Repaired()),
		},
	}, srcMetrics, log.Named("source"))

	reg.MustRegister(sched) // podtail_source_unacked_bytes, per source

	// Two discoverers, each publishing its full set; the scheduler gets the
	// union whenever either changes.
	fromPodman := make(chan []discovery.Target, 1)
	fromStatic := make(chan []discovery.Target, 1)
	var readers sync.WaitGroup
	if disc != nil {
		if catcher != nil {
			goRun(&readers, func() {
				if err := catcher.Run(readCtx, catchDir); err != nil {
					log.Warn("not watching container storage; a --rm container removed before its create event arrives is missed",
						zap.String("dir", catchDir), zap.Error(err))
				}
			})
		}
		goRun(&readers, func() { _ = disc.Run(readCtx, fromPodman) })
	}
	if len(cfg.Files.Static) > 0 {
		var dirs []discovery.StaticDir
		for _, sd := range cfg.Files.Static {
			dirs = append(dirs, discovery.StaticDir{Glob: sd.Glob, Tenant: sd.Tenant})
		}
		static := discovery.NewStatic(dirs, rules, cfg.Files.ScanInterval, log.Named("static"))
		goRun(&readers, func() { _ = static.Run(readCtx, fromStatic) })
	}
	goRun(&readers, func() {
		var podmanSet, staticSet []discovery.Target
		heard := disc == nil // until Podman's first list, a container missing may be one not yet listed
		for {
			select {
			case <-readCtx.Done():
				return
			case podmanSet = <-fromPodman:
				heard = true
			case staticSet = <-fromStatic:
			}
			if !heard {
				continue
			}
			sched.Sync(append(append([]discovery.Target{}, podmanSet...), staticSet...))
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

func mapConfig(cfg *config.Config, rules *discovery.FileRules) discovery.MapConfig {
	return discovery.MapConfig{
		TenantLabel:   cfg.Discovery.TenantLabel,
		AppLabel:      cfg.Discovery.AppLabel,
		VersionLabel:  cfg.Discovery.VersionLabel,
		RequireTenant: cfg.Discovery.RequireTenant,
		DefaultTenant: cfg.Discovery.DefaultTenant,
		HostPrefix:    cfg.Files.HostPrefix,
		Files:         rules,
	}
}

// fileRules compiles the file rules; config validation has checked them.
func fileRules(cfg *config.Config) *discovery.FileRules {
	rules, err := discovery.NewFileRules(cfg.Files.MountSuffixes, cfg.Files.PathRegex, cfg.Files.NameRegex)
	if err != nil {
		panic(err) // unreachable: Validate compiled the same rules
	}
	return rules
}

// pipelineOf returns a factory of pipelines of specs (validated at load):
// every source gets its own, since stages may keep per-stream state.
func pipelineOf(specs []map[string]any) func() *pipeline.Pipeline {
	_, stages, _ := pipeline.SplitMultiline(specs)
	return func() *pipeline.Pipeline {
		p, err := pipeline.Build(stages)
		if err != nil {
			panic(err) // unreachable: Validate built the same specs
		}
		return p
	}
}

// multilineOf returns a factory of line joiners when specs start with a
// multiline spec, else nil.
func multilineOf(specs []map[string]any) func() *pipeline.Multiline {
	ml, _, _ := pipeline.SplitMultiline(specs)
	if ml == nil {
		return nil
	}
	return func() *pipeline.Multiline {
		m, err := pipeline.NewMultilineFromSpec(ml)
		if err != nil {
			panic(err) // unreachable: Validate built the same spec
		}
		return m
	}
}

// gcPercent is podtail's GOGC unless the environment sets one. With the
// queue and push bodies outside the heap, what is left on it is mostly
// state that lives as long as its file (streams, readers, positions), and
// little is allocated per line (~35 bytes), so letting the heap grow by
// 40 % of what is live rather than all of it costs few more collections.
// 50 rather than Go's 100, over 1,000 files: 8 -> 18 collections per
// million lines, 0-5 % of podtail's CPU, for 3-4 MiB less peak RSS (make
// bench: 52.8-53.2 -> 49.1-50.2 MiB); 40 rather than 50, with
// loki.queue_bytes 6 MiB rather than 8: 38.7-39.0 -> 36.7-36.9 MiB, for
// 6-7 % more CPU.
const gcPercent = 40

// setMemoryLimit makes Go's runtime keep podtail's resident memory under
// limit. The runtime's soft limit covers only the memory it manages; about
// 13 MiB of podtail's RSS (measured idle: 15.6 MiB, of which 13.2 MiB
// file-backed) are the binary's own pages, mapped from disk, and the Loki
// queue's entries (up to queueBytes) and push bodies (compressed: under a
// quarter of that with zap lines) are held outside the heap. So the runtime
// gets what is left after those, the pages measured now, and 2 MiB for the
// pages still to be touched; but never less than a quarter of limit.
func setMemoryLimit(limit, queueBytes int64, log *zap.Logger) {
	mapped := rssFile()
	goLimit := max(limit-mapped-queueBytes*5/4-2<<20, limit/4)
	debug.SetMemoryLimit(goLimit)
	log.Info("memory limit set", zap.Int64("memory_limit", limit), zap.Int64("file_backed_rss", mapped),
		zap.Int64("queue_bytes", queueBytes), zap.Int64("go_memory_limit", goLimit))
}

// rssFile is this process's resident file-backed memory (0 if unknown).
func rssFile() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "RssFile:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
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

// journalOf is where journald containers' output is read: the configured
// journal directories as podtail sees them, and one watcher for all readers
// (without it, each polls once a second).
func journalOf(cfg *config.Config, log *zap.Logger) source.Journal {
	j := source.Journal{Maps: &journal.Maps{}}
	if !cfg.Podman.Enabled {
		return j
	}
	for _, d := range cfg.Podman.JournalDirs {
		j.Dirs = append(j.Dirs, filepath.Join(cfg.Files.HostPrefix, d))
	}
	w, err := journal.NewWatcher(j.Dirs)
	if err != nil {
		log.Warn("cannot watch the journal; journald containers' output is polled once a second", zap.Strings("dirs", j.Dirs), zap.Error(err))
		return j
	}
	j.Watch = w
	return j
}

// trimJournalMaps gives back, every second, the page-table entries of the
// journal pages the readers touched (journal.Maps.Trim): they stay in the
// page cache, and out of podtail's RSS. A second's worth of journal is what
// stays resident at full speed; idle, there is nothing to trim.
func trimJournalMaps(ctx context.Context, maps *journal.Maps) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if maps.Len() > 0 {
				maps.Trim()
			}
		}
	}
}
