package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/podman"
	"github.com/podtail/podtail/pkg/source"
)

// newDiscoverer follows Podman's containers; nil without Podman.
func newDiscoverer(api *podman.Client, cfg *config.Config, rules *discovery.FileRules, started time.Time, log *zap.Logger) *discovery.Discoverer {
	if api == nil {
		return nil
	}
	return discovery.New(api, discovery.NewMapper(mapConfig(cfg, rules)), discovery.Config{
		ReconcileInterval: cfg.Podman.ReconcileInterval,
		ReconnectBackoff:  cfg.Podman.ReconnectBackoff,
		Started:           started,
	}, log.Named("discovery"))
}

// discover starts, among lt's readers, what hands sched its targets: two
// discoverers (disc, with src's catcher beside it, and the static
// directories), each publishing its full set; the scheduler gets the union
// whenever either changes.
func discover(lt *lifetimes, cfg *config.Config, disc *discovery.Discoverer, src *sources, rules *discovery.FileRules, sched *source.Scheduler, log *zap.Logger) {
	if _, err := thisHost(); err != nil && slices.Contains(cfg.StructuredMetadata, "host") {
		log.Warn("this host's name is unknown; entries carry no host metadata", zap.Error(err))
	}
	fromPodman := make(chan []discovery.Target, 1)
	fromStatic := make(chan []discovery.Target, 1)
	if disc != nil {
		if src.catcher != nil {
			goRun(&lt.readers, func() {
				if err := src.catcher.Run(lt.readCtx, src.catchDir); err != nil {
					log.Warn("not watching container storage; a --rm container removed before its create event arrives is missed",
						zap.String("dir", src.catchDir), zap.Error(err))
				}
			})
		}
		goRun(&lt.readers, func() { _ = disc.Run(lt.readCtx, fromPodman) })
	}
	if len(cfg.Files.Static) > 0 {
		var dirs []discovery.StaticDir
		for _, sd := range cfg.Files.Static {
			dirs = append(dirs, discovery.StaticDir{Glob: sd.Glob, Tenant: sd.Tenant})
		}
		static := discovery.NewStatic(dirs, rules, shared(cfg), cfg.Files.ScanInterval, log.Named("static"))
		goRun(&lt.readers, func() { _ = static.Run(lt.readCtx, fromStatic) })
	}
	goRun(&lt.readers, func() { syncTargets(lt.readCtx, sched, disc != nil, fromPodman, fromStatic) })
}

// syncTargets hands sched the union of the two sets until ctx ends.
// viaPodman says Podman's set is to come.
func syncTargets(ctx context.Context, sched *source.Scheduler, viaPodman bool, fromPodman, fromStatic <-chan []discovery.Target) {
	var podmanSet, staticSet []discovery.Target
	heard := !viaPodman // until Podman's first list, a container missing may be one not yet listed
	for {
		select {
		case <-ctx.Done():
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
}

func mapConfig(cfg *config.Config, rules *discovery.FileRules) discovery.MapConfig {
	return discovery.MapConfig{
		TenantLabel:   cfg.Discovery.TenantLabel,
		AppLabel:      cfg.Discovery.AppLabel,
		VersionLabel:  cfg.Discovery.VersionLabel,
		RequireTenant: cfg.Discovery.RequireTenant,
		DefaultTenant: cfg.Discovery.DefaultTenant,
		PodLabels:     cfg.Discovery.PodLabels,
		Select:        selectRules(cfg),
		HostPrefix:    cfg.Files.HostPrefix,
		Files:         rules,
		Shared:        shared(cfg),
	}
}

// thisHost is this host's name, asked once: every target of a run names the
// same host, and a rename while podtail runs does not split its streams'
// metadata.
var thisHost = sync.OnceValues(os.Hostname)

// shared is what every target carries: static_labels, and source_metadata
// with this host's name.
func shared(cfg *config.Config) discovery.Shared {
	host, _ := thisHost() // an error is logged by discover; the host is then left out
	return discovery.Shared{StaticLabels: cfg.StaticLabels, Metadata: cfg.StructuredMetadata, Host: host}
}

// selectRules compiles discovery.select; config validation has checked it.
func selectRules(cfg *config.Config) []discovery.SelectRule {
	var out []discovery.SelectRule
	for i, r := range cfg.Discovery.Select {
		sr, err := discovery.NewSelectRule(r.Action, r.Source, r.Regex)
		if err != nil {
			panic(fmt.Errorf("discovery.select[%d]: %w", i, err)) // unreachable: Validate checked the same rules
		}
		out = append(out, sr)
	}
	return out
}

// fileRules compiles the file rules; config validation has checked them.
func fileRules(cfg *config.Config) *discovery.FileRules {
	rules, err := discovery.NewFileRules(discovery.FileRulesConfig{
		MountSuffixes: cfg.Files.MountSuffixes,
		MountTypes:    cfg.Files.MountTypes,
		Include:       cfg.Files.Include,
		Exclude:       cfg.Files.Exclude,
		PathRegex:     cfg.Files.PathRegex,
		NameRegex:     cfg.Files.NameRegex,
	})
	if err != nil {
		panic(err) // unreachable: Validate compiled the same rules
	}
	return rules
}
