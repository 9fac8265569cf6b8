package pipeline

import (
	"github.com/podtail/podtail/pkg/sizepool"
)

// A Stream's side of delivery: what it has in flight (pending), what the
// sink's acknowledgements settle (Ack, Skip), the per-Loki-stream last times
// reported with each position and restored after a restart, and the list of
// Loki streams those times are kept for. The Stream type is in stream.go.

type inflight struct {
	pos, ns int64
	ls      *lokiStream
}

// pendingFirst is the smallest pending array; pooled ones double from it.
const pendingFirst = 64

// pendings holds pending arrays no Stream uses, by size, 64 to 128 Ki
// entries. A file's lines are in flight by the thousand (a file read at
// once is acknowledged a batch later), and growing fresh arrays for them,
// let go once all was acknowledged, was 30 % of what podtail allocated
// over 1,000 files. Cleared when put back: their lokiStream pointers would
// keep streams alive. (Past len an array is always zero: compaction and a
// refused Send clear what they give up.)
var pendings = sizepool.New[inflight](pendingFirst, 12, true)

// addPending appends f to pending. A full array is compacted when at least
// half of it was acknowledged already, and otherwise moved to a pooled one
// twice as large. s.mu must be held.
func (s *Stream) addPending(f inflight) {
	if len(s.pending) == cap(s.pending) {
		if s.head > 0 && s.head >= len(s.pending)/2 {
			n := copy(s.pending, s.pending[s.head:])
			clear(s.pending[n:])
			s.pending, s.head = s.pending[:n], 0
		} else {
			grown := pendings.Get(max(pendingFirst, 2*cap(s.pending)))
			grown = append(grown, s.pending[s.head:]...)
			pendings.Put(s.pending)
			s.pending, s.head = grown, 0
		}
	}
	s.pending = append(s.pending, f)
}

var _ Acker = (*Stream)(nil)

// Restore sets the per-stream last times stored with a position, so times
// after a restart are the same as before it and an in-flight resend is
// identical to the original (Loki then drops it as a duplicate).
func (s *Stream) Restore(last map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range last {
		ls := s.stream(k)
		ls.last, ls.hasLast = v, true
		ls.acked, ls.hasAcked = v, true
	}
}

// ReplayTo marks the entries up to position pos as possibly sent before
// this process started (Entry.Replay): a source resuming where Loki's
// acknowledgements left off, with pos the end of the data it found there.
func (s *Stream) ReplayTo(pos int64) { s.replayTo = pos }

// Ack records delivery of everything up to pos and tells the source.
func (s *Stream) Ack(pos int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.head
	for ; i < len(s.pending) && s.pending[i].pos <= pos; i++ {
		ls := s.pending[i].ls
		ls.acked, ls.hasAcked = s.pending[i].ns, true
	}
	s.head = i
	if s.head == len(s.pending) {
		// Give the array back: kept, it would stay as large as the longest
		// run ever in flight, for every file podtail has open.
		pendings.Put(s.pending)
		s.pending, s.head = nil, 0
	}
	if s.onAck != nil {
		// A map per call rather than one kept per Stream: the sources
		// store it with the position (and copied it before), and a small
		// map kept for each of a thousand files was a quarter of a MB.
		last := make(map[string]int64, s.streams.len())
		for _, ls := range s.streams.all() {
			if ls.hasAcked {
				last[ls.key] = ls.acked
			}
		}
		s.onAck(pos, last)
	}
}

// Skip tells the stream that everything up to pos needs no delivery (all of
// it was dropped by stages): with nothing in flight, the position moves.
func (s *Stream) Skip(pos int64) {
	s.mu.Lock()
	idle := len(s.pending) == s.head
	s.mu.Unlock()
	if idle {
		s.Ack(pos)
	}
}

// stream returns the Loki stream of key, made on first use.
// s.mu must be held: Ack reads streams.
func (s *Stream) stream(key string) *lokiStream {
	ls, _ := s.streams.get(key)
	if ls == nil {
		ls = &lokiStream{key: key, listed: true}
		s.streams.put(key, ls)
	}
	return ls
}

// relist puts back in streams a Loki stream admitted after it was refused
// and taken out, so that Ack reports its times. (Should another have
// taken its key meanwhile, rendered from other added labels, that one
// stays: the times it reports are its own.)
func (s *Stream) relist(ls *lokiStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams.get(ls.key); !ok {
		s.streams.put(ls.key, ls)
	}
	ls.listed = true
}
