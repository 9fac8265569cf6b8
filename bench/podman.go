package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// containerScenario runs containers that print to stdout through the log
// driver given (k8s-file: podtail reads ctr.log; journald: podtail reads the
// journal's files; Promtail reads both through the Podman API), each tool
// in turn, and adds the scenario to the report.
func (b *bench) containerScenario(ctx context.Context, name, driver, sock string, svcPID int, image, prefix, tenantLabel string) error {
	n, lines := b.o.containers, b.o.containerLines
	lw, err := Generate(filepath.Join(b.dir, name+"-lines"), shapeFor(1, lines), time.Now().Add(-10*time.Minute))
	if err != nil {
		return err
	}
	logf("%s: starting %d containers (log driver %s) that print %d lines each", name, n, driver, lines)
	startAt := time.Now()
	if err := startPrinters(ctx, &b.containers, image, prefix+"-"+name, tenantLabel, lw.Files[0], driver, n); err != nil {
		return err
	}
	logf("%s: started in %s", name, time.Since(startAt).Round(time.Millisecond))
	sc := &Scenario{Name: name, Containers: true,
		Title: fmt.Sprintf("%d containers × %d lines on stdout, log driver %s: %d lines, %.1f MB; CPU includes the Podman service's",
			n, lines, driver, lw.Lines*int64(n), float64(lw.Bytes*int64(n))/1e6)}
	b.rep.Scenarios = append(b.rep.Scenarios, sc)
	for _, tool := range b.o.tools {
		dir, err := b.toolDir(name, tool)
		if err != nil {
			return err
		}
		spec := runSpec{tool: tool, expect: lw.Lines * int64(n), bytes: lw.Bytes * int64(n), servicePID: svcPID,
			from: lw.TimeFrom, to: lw.TimeTo, stall: b.o.stall, forward: b.forward}
		if isPodtail(tool) {
			spec.start = b.startPodtail(tool, podtailConfig{Socket: sock, TenantLabel: tenantLabel})
		} else {
			spec.start, _ = b.peerStart(tool, "", sock, tenantLabel)
		}
		logf("%s: %s", name, tool)
		r, err := measure(ctx, dir, spec)
		if err != nil && !isPodtail(tool) && ctx.Err() == nil {
			// A peer reads the containers through the Podman API's Docker
			// compatibility, which cannot follow them everywhere (Podman 4.3
			// with file events refuses journald containers): a finding for
			// the scenario's table, not the end of the bench.
			sc.Results = append(sc.Results, b.peerFailed(name, r, err))
			continue
		}
		if err != nil {
			return err
		}
		logf("%s: %s: %s", name, tool, r.brief())
		sc.Results = append(sc.Results, r)
	}
	b.containers.removeAll()
	return nil
}

// podmanScenarios runs the container and discovery scenarios on a Podman
// API service of the bench's own.
func (b *bench) podmanScenarios(ctx context.Context) error {
	image, err := mustGetenv("PODTAIL_TEST_IMAGE")
	if err != nil {
		return err
	}
	sock := filepath.Join(b.dir, "podman.sock")
	svc, err := testbed.StartPodmanService(sock)
	if err != nil {
		return err
	}
	defer svc.Stop()
	defer b.containers.removeAll()
	svcPID := svc.Cmd.Process.Pid
	tenantLabel := "bench_" + b.runID + "_tenant"
	prefix := "bench-" + b.runID

	for _, driver := range []string{"k8s-file", "journald"} {
		name := map[string]string{"k8s-file": "containers", "journald": "journald"}[driver]
		if !b.o.scenarios[name] {
			continue
		}
		if err := b.containerScenario(ctx, name, driver, sock, svcPID, image, prefix, tenantLabel); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	if b.o.scenarios["discovery"] {
		for _, tool := range b.o.tools {
			dir, err := b.toolDir("discovery", tool)
			if err != nil {
				return err
			}
			var start func(sinkURL, dir string) (*proc, error)
			var ready func(p *proc) error
			if isPodtail(tool) {
				listen := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort())
				start = b.startPodtail(tool, podtailConfig{Socket: sock, TenantLabel: tenantLabel, Listen: listen})
				ready = func(*proc) error { return waitReady("http://"+listen+"/ready", 30*time.Second) }
			} else {
				start, ready = b.peerStart(tool, "", sock, tenantLabel)
			}
			logf("discovery: %s, %d starts %s apart", tool, b.o.starts, b.o.startInterval)
			lat, err := discovery(ctx, &b.containers, image, prefix+"-"+tool, tenantLabel, b.o.starts, b.o.startInterval,
				b.forward, start, ready, dir, tool)
			if err != nil && !isPodtail(tool) && ctx.Err() == nil {
				lat.Failed = failure(err)
				logf("discovery: %s failed: %v", tool, err)
				b.rep.Latencies = append(b.rep.Latencies, lat)
				b.containers.removeAll()
				continue
			}
			if err != nil {
				return fmt.Errorf("discovery: %w", err)
			}
			logf("discovery: %s: p50 %s p99 %s (%d/%d seen)", tool, lat.P50, lat.P99, lat.Seen, lat.Starts)
			b.rep.Latencies = append(b.rep.Latencies, lat)
			b.containers.removeAll()
		}
	}
	return nil
}
