package main

import (
	"context"
	"path/filepath"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/journal"
	"github.com/podtail/podtail/pkg/loki"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
	"github.com/podtail/podtail/pkg/podman"
	"github.com/podtail/podtail/pkg/source"
	"github.com/podtail/podtail/pkg/source/file"
	"github.com/podtail/podtail/pkg/source/positions"
)

// sources are what the scheduler's readers share: the storage catcher, the
// journal, the spool, their metrics, the per-tenant guards and the inotify
// watcher.
type sources struct {
	catcher  *source.Catcher
	catchDir string
	jrnl     source.Journal
	spool    *source.Spool
	metrics  *source.Metrics
	guards   *pipeline.Limits
	watch    *file.Watcher // nil: inotify unavailable
	tap      *pipeline.Tap // server.tap; nil while off
}

// openSources opens the sources, and starts trimming the journal's pages in
// lt's background. On error it closes what it opened; else the caller
// closes the sources once the readers are done.
func openSources(ctx context.Context, lt *lifetimes, cfg *config.Config, api *podman.Client, reg *prometheus.Registry, log *zap.Logger) (_ *sources, err error) {
	src := &sources{}
	defer func() {
		if err != nil {
			src.close()
		}
	}()
	src.catcher, src.catchDir = newCatcher(ctx, api, cfg, log)
	src.jrnl = journalOf(cfg, log)
	if maps := src.jrnl.Maps; maps != nil {
		goRun(&lt.bg, func() { trimJournalMaps(lt.bgCtx, maps) })
	}
	if cfg.Spool.Enabled {
		if src.spool, err = source.OpenSpool(filepath.Join(cfg.DataDir, "spool"), log.Named("spool")); err != nil {
			return nil, err
		}
	}
	src.metrics = source.NewMetrics(reg)
	if src.guards, err = newGuards(cfg, reg, log); err != nil {
		return nil, err
	}
	src.watch = newWatcher(cfg, log)
	return src, nil
}

// close closes what openSources opened, the last first.
func (s *sources) close() {
	if s.watch != nil {
		_ = s.watch.Close()
	}
	if s.jrnl.Watch != nil {
		_ = s.jrnl.Watch.Close()
	}
}

// newCatcher returns the catcher and the directory it watches, when Podman
// is there and its storage says where logs go (else nil). The catcher opens
// new containers' logs the moment conmon creates them, so that a --rm
// container gone before its create event arrives is read.
func newCatcher(ctx context.Context, api *podman.Client, cfg *config.Config, log *zap.Logger) (*source.Catcher, string) {
	if api == nil {
		return nil, ""
	}
	st, err := api.Storage(ctx)
	if err != nil || st.DefaultLogPath("x") == "" {
		return nil, ""
	}
	return source.NewCatcher(log.Named("catcher")), filepath.Join(cfg.Files.HostPrefix, st.ContainersDir())
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

// newGuards makes the per-tenant guards. They sit in front of the sink:
// every source's pipeline.Stream applies them.
func newGuards(cfg *config.Config, reg *prometheus.Registry, log *zap.Logger) (*pipeline.Limits, error) {
	guards, err := pipeline.NewLimits(pipeline.LimitsConfig{
		MaxStreamsPerTenant: cfg.Limits.MaxStreamsPerTenant,
		MaxLabelValueBytes:  int(cfg.Limits.MaxLabelValueBytes),
		MaxLineBytes:        int(cfg.Limits.MaxLineBytes),
		DropLongLines:       cfg.Limits.LineTooLong == "drop",
		Tenants:             cfg.Limits.Tenants,
	}, reg, log.Named("limits"))
	if err != nil {
		return nil, exitError{code: 2, err: err}
	}
	return guards, nil
}

// newWatcher makes one inotify watcher for every log directory (a watcher
// each cost a goroutine with a 64 KiB buffer and three descriptors per
// directory); nil when inotify is unavailable, and directories are polled.
func newWatcher(cfg *config.Config, log *zap.Logger) *file.Watcher {
	watch, err := file.NewWatcher(log.Named("source"))
	if err != nil {
		log.Warn("inotify unavailable; log directories are polled", zap.Duration("every", cfg.Files.PollInterval), zap.Error(err))
		return nil
	}
	return watch
}

// newScheduler makes the scheduler, which runs a reader per target from
// src, each through its pipeline and the guards into sink; readCtx ends
// the readers.
func newScheduler(readCtx context.Context, store *positions.Store, guards *pipeline.Limits, sink *loki.Client,
	src *sources, cfg *config.Config, rules *discovery.FileRules, reg *prometheus.Registry, log *zap.Logger) *source.Scheduler {
	sched := source.NewScheduler(readCtx, store, pipeline.Sink{Consumer: sink, Limits: guards, Tap: src.tap}, source.Config{
		ExistingFrom: cfg.Discovery.ExistingFrom,
		Spool:        src.spool,
		Catcher:      src.catcher,
		Journal:      src.jrnl,
		Watch:        src.watch,
		Select:       selectorOf(cfg),
		Files: &source.Files{
			Rules:     rules,
			Poll:      cfg.Files.PollInterval,
			OpenFiles: file.NewOpenFiles(cfg.Files.MaxOpen),
			// As many of a tenant's directories read at once as there are
			// cores to parse with: more only hold buffers while Loki pushes back.
			ReadSlots: file.NewReadSlots(max(2, runtime.GOMAXPROCS(0))),
			Watch:     src.watch,
			Metrics:   file.NewMetrics(reg, src.metrics.Dropped(), src.metrics.Repaired()),
		},
	}, src.metrics, log.Named("source"))
	reg.MustRegister(sched) // podtail_source_unacked_bytes, per source
	return sched
}

// selectorOf returns what chooses each source's stages: pipeline.apps,
// then pipeline.container and pipeline.files.
func selectorOf(cfg *config.Config) *stage.Selector {
	sel, err := stage.NewSelector(cfg.Pipeline.SelectorConfig())
	if err != nil {
		panic(err) // unreachable: Validate built the same selector
	}
	return sel
}
