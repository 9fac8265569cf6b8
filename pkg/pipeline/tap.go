package pipeline

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podtail/podtail/pkg/labels"
)

// The tap (podtail tap, server.tap): live copies of the entries passing
// through every Stream given it (Sink.Tap), for whoever listens, filtered by
// tenant and application and taken at one point of a Stream's work: before
// the stages (the line as its source read it), after the Nth stage, or as
// shipped (after the stages, labels, unique times and guards).
//
// What it costs a Stream:
//
//   - no Tap (server.tap off): a nil check;
//   - nobody listens, or only to other Streams (another tenant or
//     application): one atomic load per Send (Tap.gen), compared with the
//     generation the Stream last matched its listeners at (a Stream's
//     tenant and application are fixed, so a listener's filter is decided
//     per Stream when a listener comes or goes, not per line). Measured:
//     README, Live tap;
//   - someone listens to it: its stages are run one by one, and each entry a
//     listener takes is copied (the line may be a view of a read buffer).
//     A listener takes at most its Rate of entries per second, and at most
//     tapBufferEntries or tapBufferBytes wait for it: what comes beyond is
//     counted (Missed) and not copied. A Stream never waits for a listener.

// TapPoint is where in a Stream entries are taken: TapBefore, TapShipped, or
// a number N >= 1, after the Nth stage (an entry whose pipeline has fewer
// is taken after its last).
type TapPoint int

const (
	// TapBefore: the line, time and labels its source passed to Send,
	// before the stages.
	TapBefore TapPoint = 0
	// TapShipped: the entry as it is handed to the sink: the Loki stream's
	// labels, the time made unique, the source's metadata added. Entries
	// a stage or a guard dropped are shown too, with the reason.
	TapShipped TapPoint = -1
)

// String says where p is, as the tap shows it.
func (p TapPoint) String() string {
	switch {
	case p == TapBefore:
		return "before the stages"
	case p == TapShipped:
		return "shipped"
	case p > 0:
		return fmt.Sprintf("after stage %d", int(p))
	}
	return fmt.Sprintf("TapPoint(%d)", int(p))
}

// TapFilter chooses what a listener sees.
type TapFilter struct {
	Tenant string // "": every tenant
	App    string // the application label; "": every application
	Point  TapPoint
	// Rate is how many entries per second the listener takes at most (a
	// tenth of it per 100 ms; under 10 per second, Rate per second); 0:
	// bounded by its buffer only.
	Rate int
}

// Bounds of a listener's buffer: entries wait in it until the listener
// takes them, and a Stream that finds it full passes on (Missed.Slow).
const (
	tapBufferEntries = 1024
	tapBufferBytes   = 4 << 20
	tapEntryOverhead = 256 // what an entry costs besides its line and metadata
)

// TapEntry is one entry as a listener sees it. Nothing in it points into a
// source's buffers: it is the listener's.
type TapEntry struct {
	// Point is where the entry was taken: TapBefore, TapShipped, or the
	// stage after which it was (Stages is how many its pipeline has).
	Point  TapPoint
	Stages int
	Tenant string
	// Labels are the stream labels at Point: the source's and those the
	// stages set so far (as shipped: exactly the Loki stream's).
	Labels   map[string]string
	Time     time.Time
	Line     string
	Metadata []Label
	// Dropped is the reason a stage or a guard dropped the entry at Point
	// (or before the stages, for the tenant allow-list and the line
	// length): it is not shipped.
	Dropped string
}

// size is what e counts against tapBufferBytes.
func (e *TapEntry) size() int64 {
	n := len(e.Line) + tapEntryOverhead
	for _, m := range e.Metadata {
		n += len(m.Name) + len(m.Value)
	}
	for k, v := range e.Labels {
		n += len(k) + len(v)
	}
	return int64(n)
}

// Tap hands copies of entries to its listeners. The zero value is not
// usable: NewTap.
type Tap struct {
	// gen is 0 while nobody listens, else a number that changes whenever a
	// listener comes or goes: the one thing Send reads while nobody listens.
	gen atomic.Uint64
	mu  sync.Mutex
	seq uint64
	ls  []*TapListener
}

// NewTap returns a tap nobody listens to.
func NewTap() *Tap { return &Tap{} }

// Listeners is how many listen now.
func (t *Tap) Listeners() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ls)
}

// Listen adds a listener; the caller must Close it.
func (t *Tap) Listen(f TapFilter) *TapListener {
	l := &TapListener{tap: t, f: f, ch: make(chan *TapEntry, tapBufferEntries), stop: make(chan struct{})}
	if f.Rate > 0 {
		every, per := 100*time.Millisecond, (f.Rate+9)/10
		if f.Rate < 10 {
			every, per = time.Second, f.Rate
		}
		l.tokens.Store(int64(per))
		go l.refill(every, int64(per))
	}
	t.mu.Lock()
	t.ls = append(t.ls, l)
	t.changedLocked()
	t.mu.Unlock()
	return l
}

// changedLocked makes every Stream match its listeners again.
func (t *Tap) changedLocked() {
	t.seq++
	if len(t.ls) == 0 {
		t.gen.Store(0)
	} else {
		t.gen.Store(t.seq)
	}
}

// watch returns s's listeners, nil when none: one atomic load, and a
// comparison with the generation s matched its listeners at.
func (t *Tap) watch(s *Stream) *tapWatch {
	if g := t.gen.Load(); g != s.tapGen {
		return t.rematch(s, g)
	}
	return s.tapW
}

// rematch is watch when the generation changed (a listener came or went,
// or the last went): g is the new one.
//
//go:noinline
func (t *Tap) rematch(s *Stream, g uint64) *tapWatch {
	s.tapGen, s.tapW = g, nil
	if g != 0 {
		s.tapW = t.match(s)
	}
	return s.tapW
}

// match returns the listeners whose filter s passes, by point; nil when
// there are none.
func (t *Tap) match(s *Stream) *tapWatch {
	app := ""
	for i := 0; i+1 < len(s.base); i += 2 {
		if s.base[i] == labels.Application {
			app = s.base[i+1]
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var w tapWatch
	for _, l := range t.ls {
		if (l.f.Tenant != "" && l.f.Tenant != s.tenant) || (l.f.App != "" && l.f.App != app) {
			continue
		}
		switch {
		case l.f.Point == TapBefore:
			w.before = append(w.before, l)
		case l.f.Point == TapShipped:
			w.shipped = append(w.shipped, l)
		default:
			w.stages = append(w.stages, l)
		}
	}
	if len(w.before)+len(w.stages)+len(w.shipped) == 0 {
		return nil
	}
	return &w
}

// TapListener receives the entries its filter chooses (Next).
type TapListener struct {
	tap    *Tap
	f      TapFilter
	ch     chan *TapEntry
	bytes  atomic.Int64 // of the entries in ch
	tokens atomic.Int64 // left in this rate window (f.Rate > 0)
	// overRate and slow count the entries not taken: beyond Rate, and
	// while the buffer was full.
	overRate, slow atomic.Uint64
	closed         atomic.Bool
	stop           chan struct{}
	once           sync.Once
}

// Filter is what l was made with.
func (l *TapListener) Filter() TapFilter { return l.f }

// Missed counts the entries l's filter chose and it did not get: over its
// rate, and while its buffer was full (it took them too slowly).
func (l *TapListener) Missed() (overRate, slow uint64) { return l.overRate.Load(), l.slow.Load() }

// Next returns the next entry, waiting at most wait; nil when none came in
// time. ok is false once ctx has ended.
func (l *TapListener) Next(ctx context.Context, wait time.Duration) (e *TapEntry, ok bool) {
	select {
	case e := <-l.ch:
		l.bytes.Add(-e.size())
		return e, true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case e := <-l.ch:
		l.bytes.Add(-e.size())
		return e, true
	case <-t.C:
		return nil, true
	case <-ctx.Done():
		return nil, false
	}
}

// Ready returns an entry that is waiting, or nil without waiting.
func (l *TapListener) Ready() *TapEntry {
	select {
	case e := <-l.ch:
		l.bytes.Add(-e.size())
		return e
	default:
		return nil
	}
}

// Close stops l: Streams stop offering it entries, and those waiting are let
// go.
func (l *TapListener) Close() {
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		t := l.tap
		t.mu.Lock()
		for i, o := range t.ls {
			if o == l {
				t.ls = append(t.ls[:i], t.ls[i+1:]...)
				break
			}
		}
		t.changedLocked()
		t.mu.Unlock()
		// A Stream that matched l before it closed may still hold it; it
		// finds it closed and passes on. Nothing waits in it for nobody.
		for l.Ready() != nil {
		}
	})
}

// refill gives l per entries every period until it closes.
func (l *TapListener) refill(every time.Duration, per int64) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.tokens.Store(per)
		}
	}
}

// wants reports whether l takes one more entry now, counting it as missed
// when not.
func (l *TapListener) wants() bool {
	if l.closed.Load() {
		return false
	}
	if l.f.Rate > 0 && l.tokens.Add(-1) < 0 {
		l.overRate.Add(1)
		return false
	}
	if len(l.ch) >= cap(l.ch) || l.bytes.Load() >= tapBufferBytes {
		l.slow.Add(1)
		return false
	}
	return true
}

// give hands e to l, never waiting.
func (l *TapListener) give(e *TapEntry) {
	n := e.size()
	l.bytes.Add(n)
	select {
	case l.ch <- e:
	default: // another Stream filled it since wants
		l.bytes.Add(-n)
		l.slow.Add(1)
	}
}

// tapWatch is a Stream's listeners at one generation of its Tap, by point
// (a new generation makes a new one), used by the Stream's goroutine only.
type tapWatch struct {
	before, stages, shipped []*TapListener
	// sets caches the entries' label sets by what they are made of (see
	// labels), sig is the buffer their keys are built in: making the maps
	// for every entry taken was most of what a copy cost. They are shared
	// by the entries, which nobody changes.
	sets map[string]map[string]string
	sig  []byte
}

// tapLabelSets bounds tapWatch.sets (label sets are few per Stream:
// this is a backstop).
const tapLabelSets = 64

// labels is the label set of an entry of s at a point where the stages
// have added added, and the source passed src (see Stream.tapLabels).
func (w *tapWatch) labels(s *Stream, added map[string]string, src []string) map[string]string {
	w.sig = appendSignature(binary.AppendUvarint(w.sig[:0], uint64(len(added))), added)
	for _, v := range src {
		w.sig = binary.AppendUvarint(w.sig, uint64(len(v)))
		w.sig = append(w.sig, v...)
	}
	if ls, ok := w.sets[string(w.sig)]; ok {
		return ls
	}
	ls := s.tapLabels(added, src)
	if w.sets == nil || len(w.sets) >= tapLabelSets {
		w.sets = make(map[string]map[string]string)
	}
	w.sets[string(w.sig)] = ls
	return ls
}

// offer gives the entry mk makes to each of ls that wants one now (made
// once, only if one does); with at, only to those at points at chooses.
func offer(ls []*TapListener, at func(TapPoint) bool, mk func() *TapEntry) {
	var e *TapEntry
	for _, l := range ls {
		if (at != nil && !at(l.f.Point)) || !l.wants() {
			continue
		}
		if e == nil {
			e = mk()
		}
		l.give(e)
	}
}

// sent is the tap of Send's start: the line as the source passed it.
func (w *tapWatch) sent(s *Stream, t time.Time, line string, src []string) {
	if len(w.before) > 0 {
		offer(w.before, nil, func() *TapEntry {
			return s.tapEntry(TapBefore, 0, t, line, w.labels(s, nil, src), nil)
		})
	}
}

// dropped taps an entry a guard dropped, for the listeners past that point:
// before the stages (r nil: line and t as the source passed them), or after
// them (r: the record).
func (w *tapWatch) dropped(s *Stream, reason string, t time.Time, line string, src []string, r *Record) {
	point := TapBefore
	var added map[string]string
	var md []Label
	if r != nil {
		point, t, line, added, md = TapShipped, r.Time, r.Line, r.Labels, r.Metadata
	}
	mk := func() *TapEntry {
		e := s.tapEntry(point, 0, t, line, w.labels(s, added, src), md)
		e.Dropped = reason
		return e
	}
	if r == nil {
		offer(w.stages, nil, mk)
	}
	offer(w.shipped, nil, mk)
}

// process runs p's stages on r as p.Process does, taking r after each for
// the listeners of that stage (after the last, also for those of stages p
// does not have), and, when a stage drops r, for the listeners past it.
func (w *tapWatch) process(s *Stream, p *Pipeline, r *Record, src []string) (bool, string) {
	n := len(p.stages)
	if len(w.stages) == 0 { // the stages as Process runs them; a drop is taken
		for i, st := range p.stages {
			if keep, reason := st.Process(r); !keep {
				offer(w.shipped, nil, func() *TapEntry {
					e := s.tapEntry(TapPoint(i+1), n, r.Time, r.Line, w.labels(s, r.Labels, src), r.Metadata)
					e.Dropped = reason
					return e
				})
				return false, reason
			}
		}
		return true, ""
	}
	if n == 0 { // no stages: what they see is the line as sent
		offer(w.stages, nil, func() *TapEntry {
			return s.tapEntry(TapBefore, 0, r.Time, r.Line, w.labels(s, r.Labels, src), r.Metadata)
		})
	}
	for i, st := range p.stages {
		after := TapPoint(i + 1)
		mk := func() *TapEntry { return s.tapEntry(after, n, r.Time, r.Line, w.labels(s, r.Labels, src), r.Metadata) }
		if keep, reason := st.Process(r); !keep {
			dropped := func() *TapEntry { e := mk(); e.Dropped = reason; return e }
			offer(w.stages, func(p TapPoint) bool { return p >= after }, dropped)
			offer(w.shipped, nil, dropped)
			return false, reason
		}
		offer(w.stages, func(p TapPoint) bool { return p == after || (i == n-1 && p > after) }, mk)
	}
	return true, ""
}

// ship taps e, which Send made of r, as it goes to the sink.
func (w *tapWatch) ship(s *Stream, e *Entry, r *Record, src []string) {
	if len(w.shipped) > 0 {
		offer(w.shipped, nil, func() *TapEntry {
			return s.tapEntry(TapShipped, 0, e.Time, e.Line, w.labels(s, r.Labels, src), e.Metadata)
		})
	}
}

// tapLabels is a listener's copy of a line's labels: the Stream's as
// render makes them (reserved ones from the source, values bounded), over
// the stages' added so far (added), every string copied.
func (s *Stream) tapLabels(added map[string]string, src []string) map[string]string {
	all, _, _ := labels.Sanitize(s.mergeLabels(added, src), s.limits.maxLabelValue())
	ls := make(map[string]string, len(all))
	for k, v := range all {
		ls[strings.Clone(k)] = strings.Clone(v)
	}
	return ls
}

// tapEntry makes a listener's copy of an entry, with labels ls (a copy
// already: see tapLabels).
func (s *Stream) tapEntry(p TapPoint, stages int, t time.Time, line string, ls map[string]string, md []Label) *TapEntry {
	e := &TapEntry{Point: p, Stages: stages, Tenant: s.tenant, Labels: ls, Time: t, Line: strings.Clone(line)}
	if len(md) > 0 {
		e.Metadata = make([]Label, len(md))
		for i, m := range md {
			e.Metadata[i] = Label{Name: strings.Clone(m.Name), Value: strings.Clone(m.Value)}
		}
	}
	return e
}

// Where says where e was taken: "before the stages", "after stage 2 of 3",
// "shipped".
func (e *TapEntry) Where() string {
	if e.Point > 0 {
		return fmt.Sprintf("after stage %d of %d", int(e.Point), e.Stages)
	}
	return e.Point.String()
}
