package positions

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's: made with it, registered by whoever runs it
// (Collectors), so that a store in a test or a tool needs no registry.
type metrics struct {
	writes, writeErrors, corrupt prometheus.Counter
}

func newMetrics() metrics {
	return metrics{
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "podtail_positions_writes_total",
			Help: "Times the positions file was written (at most once per acknowledgement, coalesced)."}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "podtail_positions_write_errors_total",
			Help: "Attempts to write the positions file that failed (data_dir full, over quota, read-only): positions stay in memory and are retried every second; the file keeps what the last successful write saved."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "podtail_positions_corrupt_files_total",
			Help: "Damaged positions files found at start (0 or 1 per run): kept aside as positions.json.corrupt-<time>, and every source read again from its start, checked with Loki so that nothing is sent twice."}),
	}
}

// Collectors are the store's metrics, for a registry.
func (s *Store) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.writes, s.metrics.writeErrors, s.metrics.corrupt,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "podtail_positions_unsaved_seconds",
			Help: "How long the oldest change of position not yet in the positions file has waited: a few milliseconds normally, 0 when idle; it grows while the file cannot be written (data_dir full), and a crash then reads that long again (checked with Loki)."},
			func() float64 { return s.unsaved().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "podtail_positions",
			Help: "Positions kept (one per container log and per log file; forgotten an hour after their source is gone)."},
			func() float64 { return float64(s.Len()) }),
	}
}
