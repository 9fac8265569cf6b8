package loki

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons besides "rejected_<status>".
const reasonRetriesExhausted = "retries_exhausted"

// Retry reason for failures that never produced a response.
const reasonNetwork = "network"

type metrics struct {
	entriesSent    *prometheus.CounterVec // tenant
	bytesSent      *prometheus.CounterVec // tenant
	dropped        *prometheus.CounterVec // tenant, reason
	retries        *prometheus.CounterVec // tenant, reason
	entriesRetried *prometheus.CounterVec // tenant, reason
	uncertain      *prometheus.CounterVec // tenant, outcome
	replayed       *prometheus.CounterVec // tenant, outcome
	queuedBytes    prometheus.Gauge
	queueLimit     prometheus.Gauge
	pushDuration   *prometheus.HistogramVec // tenant, status
	batchEntries   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		entriesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_loki_entries_sent_total",
			Help: "Entries Loki acknowledged with a 2xx.",
		}, []string{"tenant"}),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_loki_bytes_sent_total",
			Help: "Line and structured metadata bytes of the entries Loki acknowledged (before encoding).",
		}, []string{"tenant"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_loki_entries_dropped_total",
			Help: "Entries given up on for good (rejected_<status>, retries_exhausted, encode: a time a push request cannot carry); they are still acknowledged to their source.",
		}, []string{"tenant", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_loki_push_retries_total",
			Help: "Pushes that failed retryably and will be retried, by HTTP status or \"network\".",
		}, []string{"tenant", "reason"}),
		entriesRetried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_loki_entries_retried_total",
			Help: "Entries in pushes that failed retryably and will be sent again, by HTTP status or \"network\".",
		}, []string{"tenant", "reason"}),
		uncertain: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_loki_uncertain_pushes_total",
			Help: "Pushes that may have been stored though Loki never said so (sent in full and the answer lost or timed out, or answered 5xx), counted when checked before the resend, by what Loki was found to hold: stored (not resent), partly_stored (missing streams resent), not_stored, unverified (resent whole: the query API did not answer).",
		}, []string{"tenant", "outcome"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_loki_replayed_entries_total",
			Help: "Entries read again after a restart that the podtail before may have sent, by what Loki was found to hold: stored (not sent again), sent, unverified (sent unchecked: the query API did not answer).",
		}, []string{"tenant", "outcome"}),
		queuedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podtail_loki_queued_bytes",
			Help: "Bytes accepted from sources and not yet acknowledged or dropped.",
		}),
		// The bound itself, so that alerts and dashboards compare the queue
		// with what this podtail was configured with, not with a default
		// written into them that the next change of defaults leaves behind.
		queueLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podtail_loki_queue_limit_bytes",
			Help: "loki.queue_bytes: at podtail_loki_queued_bytes this high, sources stop reading.",
		}),
		pushDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podtail_loki_push_duration_seconds",
			Help:    "Duration of single push requests, by HTTP status or \"network\".",
			Buckets: prometheus.DefBuckets,
		}, []string{"tenant", "status"}),
		batchEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podtail_loki_batch_entries",
			Help:    "Entries per batch pushed.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 … 65536
		}),
	}
	if reg == nil {
		return m, nil
	}
	all := []prometheus.Collector{
		m.entriesSent, m.bytesSent, m.dropped, m.retries, m.entriesRetried, m.uncertain, m.replayed,
		m.queuedBytes, m.queueLimit, m.pushDuration, m.batchEntries,
	}
	var errs []error
	var done []prometheus.Collector
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		} else {
			done = append(done, c)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Leave the registerer as we found it so a corrected retry can succeed.
		for _, c := range done {
			reg.Unregister(c)
		}
		return nil, fmt.Errorf("loki: registering metrics: %w", err)
	}
	return m, nil
}

// Per-tenant gauges are read from the client's state at scrape time rather
// than kept up to date on every entry.
var (
	tenantQueuedDesc = prometheus.NewDesc("podtail_loki_tenant_queued_bytes",
		"Bytes accepted for a tenant and not yet acknowledged or dropped.", []string{"tenant"}, nil)
	oldestAgeDesc = prometheus.NewDesc("podtail_loki_oldest_unacked_age_seconds",
		"Age of a tenant's oldest entry accepted and not yet acknowledged or dropped (0 when none): how far delivery lags.",
		[]string{"tenant"}, nil)
	queueMemoryDesc = prometheus.NewDesc("podtail_loki_queue_memory_bytes",
		"Memory holding queued entries and push bodies, outside the Go heap (not in go_memstats_*): in_use, or resident (in use, and idle for less than 10 s).",
		[]string{"state"}, nil)
)

// stateCollector exports the per-tenant gauges of a Client.
type stateCollector struct{ c *Client }

func (s stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tenantQueuedDesc
	ch <- oldestAgeDesc
	ch <- queueMemoryDesc
}

func (s stateCollector) Collect(ch chan<- prometheus.Metric) {
	inUse, resident := chunks.Stats()
	ch <- prometheus.MustNewConstMetric(queueMemoryDesc, prometheus.GaugeValue, float64(inUse), "in_use")
	ch <- prometheus.MustNewConstMetric(queueMemoryDesc, prometheus.GaugeValue, float64(resident), "resident")
	now := time.Now()
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	for id, t := range s.c.tenants {
		age := 0.0
		if b := t.oldest(); b != nil {
			age = now.Sub(b.created).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(tenantQueuedDesc, prometheus.GaugeValue, float64(t.queued), id)
		ch <- prometheus.MustNewConstMetric(oldestAgeDesc, prometheus.GaugeValue, age, id)
	}
}
