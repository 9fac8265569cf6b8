package main

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/loki"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/server"
	"github.com/podtail/podtail/pkg/source"
)

// The status page's wiring (server.status): the server starts before the
// sources exist, so it is given a provider at once (newStatusProvider) and
// the report's maker once the scheduler is there (serveStatus).

// probeEvery: while no push reaches Loki (nothing to send), the status asks
// Loki's /ready this often, so that its reachability is current.
const probeEvery = 10 * time.Second

// newStatusProvider is the late-bound provider the server serves the status
// from; nil when server.status is off (nothing served).
func newStatusProvider(cfg *config.Config) *server.StatusProvider {
	if !cfg.Server.Status {
		return nil
	}
	return &server.StatusProvider{}
}

// serveStatus gives p (nil: off) the maker of reports, and keeps Loki's
// reachability current among lt's background helpers.
func serveStatus(lt *lifetimes, p *server.StatusProvider, sched *source.Scheduler, sink *loki.Client, guards *pipeline.Limits, dropped prometheus.Collector) {
	if p == nil {
		return
	}
	host, _ := thisHost()
	p.Set(func(context.Context) (*server.StatusReport, error) {
		return statusReport(time.Now(), host, sched.Status(), sink.Stats(), guards, guardDrops(dropped)), nil
	})
	goRun(&lt.bg, func() {
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		for {
			if st := sink.Stats(); time.Since(st.Checked) >= probeEvery {
				_, _ = sink.Probe(lt.bgCtx)
			}
			select {
			case <-lt.bgCtx.Done():
				p.Set(nil)
				return
			case <-t.C:
			}
		}
	})
}

// guardReasons are the drop reasons of podtail's own per-tenant limits
// (pipeline.Limits): refusals, unlike a drop stage's.
var guardReasons = map[string]bool{
	pipeline.DropTenantNotAllowed: true,
	pipeline.DropStreamLimit:      true,
	pipeline.DropLineTooLong:      true,
}

// guardDrops reads, per tenant and reason, the entries podtail's limits
// dropped, from the pipeline's drop counter (tenant, reason) already kept.
func guardDrops(dropped prometheus.Collector) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	ch := make(chan prometheus.Metric)
	go func() { dropped.Collect(ch); close(ch) }()
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil {
			continue
		}
		var tenant, reason string
		for _, l := range pb.GetLabel() {
			switch l.GetName() {
			case "tenant":
				tenant = l.GetValue()
			case "reason":
				reason = l.GetValue()
			}
		}
		if n := int64(pb.GetCounter().GetValue()); guardReasons[reason] && n > 0 {
			if out[tenant] == nil {
				out[tenant] = map[string]int64{}
			}
			out[tenant][reason] += n
		}
	}
	return out
}

// statusReport puts the sources' and the sink's views together: a tenant
// row for each tenant either knows, and on each source of a tenant whose
// pushes Loki refuses, Loki's answer.
func statusReport(now time.Time, host string, srcs []source.Status, st loki.Stats, guards *pipeline.Limits, drops map[string]map[string]int64) *server.StatusReport {
	rep := &server.StatusReport{Time: now, Version: version, Host: host, Tenants: []server.TenantStatus{}, Sources: []server.SourceStatus{}}
	rep.Loki = server.LokiStatus{
		URL: st.URL, Checked: timePtr(st.Checked), LastContact: timePtr(st.LastContact),
		Error: st.Error, ErrorAt: timePtr(st.ErrorAt), QueuedBytes: st.QueuedBytes, QueueLimitBytes: st.QueueLimit,
	}
	if !st.Checked.IsZero() {
		rep.Loki.Reachable = &st.Reachable
	}
	tenants := map[string]*server.TenantStatus{}
	var order []string
	tenant := func(id string) *server.TenantStatus {
		t := tenants[id]
		if t == nil {
			t = &server.TenantStatus{Tenant: id, Allowed: guards.Allowed(id)}
			tenants[id] = t
			order = append(order, id)
		}
		return t
	}
	for _, ts := range st.Tenants {
		t := tenant(ts.Tenant)
		t.QueuedBytes, t.OldestUnackedSeconds = ts.QueuedBytes, ts.OldestUnacked.Seconds()
		t.Pushes, t.EntriesSent = ts.Pushes, ts.EntriesSent
		t.PushLatency = server.PushLatency{Last: ts.LastLatency.Seconds(), P50: ts.P50.Seconds(), P99: ts.P99.Seconds()}
		if len(ts.Refused) > 0 {
			t.RefusedPushes = ts.Refused
		}
		for reason, n := range ts.Dropped {
			if t.DroppedEntries == nil {
				t.DroppedEntries = map[string]int64{}
			}
			t.DroppedEntries[reason] += n
		}
		t.LastOK, t.LastError, t.LastErrorAt, t.Failing = timePtr(ts.LastOK), ts.LastError, timePtr(ts.LastErrorAt), ts.Failing
	}
	for _, s := range srcs {
		tenant(s.Tenant).Sources++
	}
	for id, byReason := range drops {
		t := tenant(id)
		for reason, n := range byReason {
			if t.DroppedEntries == nil {
				t.DroppedEntries = map[string]int64{}
			}
			t.DroppedEntries[reason] += n
		}
	}
	for _, s := range srcs {
		row := server.SourceStatus{
			Key: s.Key, Kind: s.Kind, Container: s.Container, ID: s.ID, Path: s.Path,
			Tenant: s.Tenant, Application: s.App, Version: s.Version, Stream: s.Stream, LogDriver: s.LogDriver,
			State: s.State, BytesRead: s.Read, BytesAcked: s.Acked, LagBytes: s.LagBytes, LagSeconds: s.Lag.Seconds(),
			LastError: s.Error, Since: timePtr(s.Since),
		}
		if t := tenants[s.Tenant]; row.LastError == "" && t.Failing {
			row.LastError = "Loki refuses tenant " + s.Tenant + "'s pushes: " + t.LastError
		}
		rep.Sources = append(rep.Sources, row)
	}
	slices.Sort(order)
	for _, id := range order {
		rep.Tenants = append(rep.Tenants, *tenants[id])
	}
	return rep
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
