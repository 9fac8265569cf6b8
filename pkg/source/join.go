package source

import (
	"slices"
	"sync"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// Multi-line entries on container output (Pipes.Join: a Go panic's trace on
// stderr), for both readers.
//
// stdout and stderr interleave in one log (or journal), and a joined entry
// goes to the Stream only once it is complete, after lines of the other
// stream that came later and were sent at once. The Stream's Ack ("delivered
// up to here") therefore says nothing of the lines an entry holds: each
// entry is kept here from its first line until Loki acknowledged it, with
// where its first line starts. The reader's acked keeps the stored position
// before the first of them and records, per stream, from where that
// stream's lines must be read and joined again after a restart
// (positions.Position.DeliveredStreams, DeliveredCursors): the other
// stream's lines past there were delivered and are not sent again.

// joinEntry is one multi-line entry: being joined, or sent and not yet
// acknowledged.
type joinEntry[P any] struct {
	stream string
	// start is where its stream is read again from while it is not
	// delivered: its first line's offset (k8s-file), the cursor of the
	// journal entry before its first line (journald).
	start P
	tok   int64 // the Stream position it was sent with; 0 while being joined
}

// joinedOut is an entry a joiner completed, to be sent.
type joinedOut[P any] struct {
	pipeline.Joined
	stream string
	e      *joinEntry[P]
}

// joins are a reader's joiners, by stream, and the entries they hold or
// sent. Everything but held is the reading goroutine's.
type joins[P any] struct {
	factory map[string]func() *pipeline.Multiline
	ml      map[string]*pipeline.Multiline
	streams []string                 // ml's keys in order: flushed in a stable order
	open    map[string]*joinEntry[P] // the entry each joiner is joining
	mu      *sync.Mutex              // the reader's: acked reads held
	held    []*joinEntry[P]          // oldest first
}

func newJoins[P any](mk map[string]func() *pipeline.Multiline, mu *sync.Mutex) *joins[P] {
	j := &joins[P]{factory: mk, mu: mu}
	j.reset()
	return j
}

// reset starts over with empty joiners and nothing held (a new log file).
func (j *joins[P]) reset() {
	j.ml, j.open, j.streams = map[string]*pipeline.Multiline{}, map[string]*joinEntry[P]{}, nil
	for stream, mk := range j.factory {
		if m := mk(); m != nil {
			j.ml[stream] = m
			j.streams = append(j.streams, stream)
		}
	}
	slices.Sort(j.streams)
	j.mu.Lock()
	j.held = nil
	j.mu.Unlock()
}

// has says whether stream's lines are joined.
func (j *joins[P]) has(stream string) bool { return j.ml[stream] != nil }

// add gives stream's joiner a line that starts at start (the line must be
// the joiner's to keep) and returns the entries this completes.
func (j *joins[P]) add(stream, line string, t time.Time, start P, now time.Time) []joinedOut[P] {
	m := j.ml[stream]
	before := m.Pending()
	out := m.Add(line, t, 0, now)
	// Multiline says which entries it completed but not whether line began
	// a new one: it did when nothing was pending, or when the pending
	// entry was completed before it (line stays pending, or was completed
	// on its own as well).
	var queue []*joinEntry[P]
	if before > 0 {
		queue = append(queue, j.open[stream])
	}
	if before == 0 || len(out) == 2 || (len(out) == 1 && m.Pending() == 1) {
		e := &joinEntry[P]{stream: stream, start: start}
		j.mu.Lock()
		j.held = append(j.held, e) // before anything is sent: an ack may come at once
		j.mu.Unlock()
		queue = append(queue, e)
	}
	return j.take(stream, out, queue)
}

// take pairs a joiner's completed entries with their records, oldest
// first; what is left is the one it is joining.
func (j *joins[P]) take(stream string, out []pipeline.Joined, queue []*joinEntry[P]) []joinedOut[P] {
	var done []joinedOut[P]
	for i, jo := range out {
		done = append(done, joinedOut[P]{Joined: jo, stream: stream, e: queue[i]})
	}
	if len(queue) > len(out) {
		j.open[stream] = queue[len(out)]
	} else {
		delete(j.open, stream)
	}
	return done
}

// flush returns the entries whose max_wait has passed, or all, if force.
func (j *joins[P]) flush(now time.Time, force bool) []joinedOut[P] {
	var done []joinedOut[P]
	for _, stream := range j.streams {
		if out := j.ml[stream].Flush(now, force); len(out) > 0 {
			done = append(done, j.take(stream, out, []*joinEntry[P]{j.open[stream]})...)
		}
	}
	return done
}

// wait is d, or less when an entry is due (max_wait) before then.
func (j *joins[P]) wait(now time.Time, d time.Duration) time.Duration {
	for _, m := range j.ml {
		if at, ok := m.Deadline(); ok {
			d = min(d, max(at.Sub(now), 0))
		}
	}
	return d
}

// sending records the position e is sent with, before it is sent (a stage
// may drop it, and the Stream then acknowledges at once).
func (j *joins[P]) sending(e *joinEntry[P], tok int64) {
	j.mu.Lock()
	e.tok = tok
	j.mu.Unlock()
}

// settle forgets the entries an acknowledgement up to tok delivered and
// calls hold with the start of each stream's first entry still held. j.mu
// must be held.
func (j *joins[P]) settle(tok int64, hold func(stream string, start P)) {
	kept := j.held[:0]
	var seen []string
	for _, e := range j.held {
		if e.tok != 0 && e.tok <= tok {
			continue
		}
		kept = append(kept, e)
		if !slices.Contains(seen, e.stream) {
			seen = append(seen, e.stream)
			hold(e.stream, e.start)
		}
	}
	clear(j.held[len(kept):])
	j.held = kept
}
