package positions

import (
	"io"
	"time"

	"go.uber.org/zap"
)

// OpenWith is Open with what syncs write going through wrap: the seam
// that makes a write fail as on a full data_dir.
func OpenWith(dir string, wrap func(io.Writer) io.Writer) (*Store, error) { return open(dir, wrap) }

// StepClock sets the store's wall clock step ahead of the machine's (behind
// when negative), as a date -s would, for the store alone.
func (s *Store) StepClock(step time.Duration) { s.wallStep.Store(int64(step)) }

// Unsaved is podtail_positions_unsaved_seconds.
func (s *Store) Unsaved() time.Duration { return s.unsaved() }

// NoteFailures has Run's log note a failed sync at t0 plus each offset,
// then a successful one a second after the last; it returns how many
// failures it noted.
func NoteFailures(log *zap.Logger, path string, offsets []time.Duration, err error, t0 time.Time) int {
	f := failures{retry: time.Second}
	for _, d := range offsets {
		f.note(t0.Add(d), err, path, log)
	}
	n := f.n
	f.note(t0.Add(offsets[len(offsets)-1]+time.Second), nil, path, log)
	return n
}

// RestGap and BusyChanges are Run's pacing at rest (positions.go).
const (
	RestGap     = restGap
	BusyChanges = busyChanges
)
