package source

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the sources' counters, per tenant.
type Metrics struct {
	lines     *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	malformed *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	repaired  *prometheus.CounterVec
	// journalLost counts journal entries gone before they were read.
	journalLost *prometheus.CounterVec
	targets     prometheus.Gauge
}

// Dropped is the pipeline-drop counter, shared with the file tailers.
func (m *Metrics) Dropped() *prometheus.CounterVec { return m.dropped }

// Repaired counts lines made valid UTF-8, shared with the file tailers.
func (m *Metrics) Repaired() *prometheus.CounterVec { return m.repaired }

// NewMetrics registers the sources' metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_source_entries_read_total", Help: "Log entries read from sources.",
		}, []string{"tenant"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_source_bytes_read_total", Help: "Bytes read from sources (as stored, CRI framing included).",
		}, []string{"tenant"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_source_malformed_lines_total", Help: "Container log lines not in CRI format, shipped as read.",
		}, []string{"tenant"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_pipeline_entries_dropped_total", Help: "Entries dropped by pipeline stages, by reason.",
		}, []string{"tenant", "reason"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_pipeline_lines_utf8_repaired_total", Help: "Lines whose invalid UTF-8 was replaced with U+FFFD before shipping.",
		}, []string{"tenant"}),
		journalLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podtail_source_journal_entries_lost_total",
			Help: "Journal entries rotated or vacuumed away before a container reader got to them (entries of the whole journal, not only the container's).",
		}, []string{"tenant"}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podtail_source_active", Help: "Sources currently reading.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.lines, m.bytes, m.malformed, m.dropped, m.repaired, m.journalLost, m.targets)
	}
	return m
}
