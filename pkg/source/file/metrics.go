package file

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the file tailers' counters, per tenant.
type Metrics struct {
	lines     *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	truncated *prometheus.CounterVec
	opened    *prometheus.CounterVec
	skipped   *prometheus.CounterVec
	rotations *prometheus.CounterVec
	refused   *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	repaired  *prometheus.CounterVec
	open      prometheus.Gauge
}

// NewMetrics registers the file metrics on reg (nil: not registered).
// dropped counts pipeline drops and is shared with other sources.
// repaired counts lines made valid UTF-8, likewise shared; either may be nil.
func NewMetrics(reg prometheus.Registerer, dropped, repaired *prometheus.CounterVec) *Metrics {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"tenant"}, labels...))
	}
	m := &Metrics{
		lines:     cv("podtail_file_lines_read_total", "Lines read from log files."),
		bytes:     cv("podtail_file_bytes_read_total", "Bytes read from log files (decompressed for .gz backups)."),
		truncated: cv("podtail_file_lines_truncated_total", "Lines longer than the line limit, shipped truncated."),
		opened:    cv("podtail_file_opened_total", "Files opened, by kind: plain, gzip, and -resumed when reading resumed at a stored position.", "kind"),
		skipped:   cv("podtail_file_backups_skipped_total", "Gzip backups of files already read to their end."),
		rotations: cv("podtail_file_rotations_total", "Files finished because they were renamed, deleted or truncated in place.", "reason"),
		refused:   cv("podtail_file_refused_total", "Log directories and entries not read, by reason: symlink, hardlink, fifo, socket, device, directory, other, dir_symlink (the directory's own path).", "reason"),
		dropped:   dropped,
		repaired:  repaired,
		open:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "podtail_file_open", Help: "Log files open."}),
	}
	if m.dropped == nil {
		m.dropped = cv("podtail_pipeline_entries_dropped_total", "Entries dropped by pipeline stages, by reason.", "reason")
	}
	if reg != nil {
		reg.MustRegister(m.lines, m.bytes, m.truncated, m.opened, m.skipped, m.rotations, m.refused, m.open)
	}
	return m
}
