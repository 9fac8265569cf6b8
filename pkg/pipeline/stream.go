package pipeline

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The Stream: what it is, Send (stages, guards, unique times), Flush and
// the outbox. What it has in flight and the acknowledgements are in
// streamack.go, how it renders label sets in render.go, what it shows a tap
// (podtail tap) in tap.go.

// Stream runs a pipeline for one source (one file, one container's log) and
// hands the result to the sink: it renders the source's labels with those
// stages added, keeps times unique per Loki stream, counts drops, and tracks
// what is in flight so that the source learns, on each acknowledgement, the
// position it may store together with the per-stream last times.
//
// It applies the per-tenant guards of its Sink's Limits (tenant
// allow-list, line length, label value length, streams per tenant); without
// them it still bounds lines and label values by Loki's defaults.
//
// Send keeps the entries it makes and Flush hands them to the sink in runs
// (one Consumer call each, at most outboxSize entries): a source must Flush
// after each read, before it waits, and must not drop the stream while
// Buffered is not 0, except to stop.
//
// Send and Flush are called by one goroutine; Ack by the sink, concurrently.
type Stream struct {
	tenant string
	base   []string // the source's labels: name, value, name, value...
	pipe   *Pipeline
	next   Consumer
	drops  *prometheus.CounterVec
	// repaired counts lines made valid UTF-8.
	repaired *prometheus.CounterVec
	// collide is how far behind the previous entry of its Loki stream an
	// entry's time may be and still be moved just past it (see Send).
	collide time.Duration
	limits  *Limits // nil: Loki's defaults, no stream bound
	// cache leads from the labels stages added to their Loki stream: one
	// added label (log_level, usually) by name and value, no signature
	// string to build per line; more by signature (sig is the buffer it is
	// built in).
	cache small[[2]string, *lokiStream]
	sig   []byte
	// admitCalls counts admit's cache hits: the clock is read on one in
	// admitClockEvery of them only.
	admitCalls int
	streams    small[string, *lokiStream] // by key
	rec        Record
	// replayTo: entries whose position is at most this may have been sent
	// by a podtail that ran before (see Entry.Replay); 0: none.
	replayTo int64

	// out holds entries processed and in pending but not handed to next
	// yet (see Flush): from outboxes while it holds any, else nil.
	out      []Entry
	ob       *outbox // out's, while it has one
	borrowed bool    // see StreamConfig.BorrowedLines
	meta     []Label // StreamConfig.Metadata
	byStream map[string]*Pipeline
	detached bool // the entries in out no longer borrow their lines

	// tap: Sink.Tap (nil: none); tapW its listeners of this stream at
	// its generation tapGen (see Tap.watch).
	tap    *Tap
	tapGen uint64
	tapW   *tapWatch
	tw     *tapWatch // tapW while a Send runs and someone listens, else nil

	onAck func(pos int64, last map[string]int64)
	mu    sync.Mutex
	// pending[head:] is what was sent and not acknowledged yet, in order
	// (see addPending).
	pending []inflight
	head    int
}

// lokiStream is what a Stream knows of one of the Loki streams its lines
// go to. The render caches lead to it, so that a line costs one map lookup,
// not one per fact (its labels, its last time, its admission).
type lokiStream struct {
	rendered, key string
	last          int64 // time of its last entry sent (ns)
	hasLast       bool
	// admitted: Limits admitted it, last told it is in use at admittedAt.
	admitted   bool
	admittedAt time.Time
	// acked is the time of its last acknowledged entry, if hasAcked
	// (Stream.mu).
	acked    int64
	hasAcked bool
	// listed: in Stream.streams, whose times Ack reports. A stream refused
	// at the tenant's bound leaves it (a render cache may still lead to it).
	listed bool
}

// StreamConfig configures a Stream.
type StreamConfig struct {
	Tenant string
	Labels map[string]string // the source's stream labels
	// Collide: conmon stamps all lines of one read alike, so container
	// output uses a large window; app times (zap) are precise, so files use
	// a microsecond, which moves a time by nanoseconds only on a collision.
	Collide time.Duration
	Drops   *prometheus.CounterVec // labels: tenant, reason
	// Repaired counts lines whose invalid UTF-8 was replaced (U+FFFD): Loki
	// may refuse a whole push over one such line. Labels: tenant.
	Repaired *prometheus.CounterVec
	// OnAck is called (from the sink's goroutine; it must not block) with the
	// position up to which everything was delivered and the last times per
	// Loki stream at that point, by stream key (the callee's to keep).
	OnAck func(pos int64, last map[string]int64)
	// ByStream holds pipelines for some values of the stream label a source
	// passes to Send (container output's stdout and stderr may be processed
	// apart: pipeline.apps); a line of another stream, or without one, goes
	// through the pipeline NewStream was given.
	ByStream map[string]*Pipeline
	// Metadata is structured metadata of the source (its container, image,
	// pod, host), added to every entry after what stages set.
	Metadata []Label
	// BorrowedLines: the lines the source passes to Send stay valid only
	// until the next Flush returns (they point into its read buffer).
	// Entries a failed Flush keeps are copied out then, so the source may
	// reuse its buffer whatever happens. Without it, lines are the
	// stream's to keep.
	BorrowedLines bool
}

// Sink is the far end of every Stream: the consumer, and the per-tenant
// guards each Stream applies before it (nil: Loki's default line and label
// value bounds only). One value, so a source cannot pass on one without
// the other.
type Sink struct {
	Consumer
	Limits *Limits
	// Tap shows what passes through the Streams to whoever listens (nil:
	// nobody can; server.tap).
	Tap *Tap
}

// NewStream binds p (may be nil: no stages) to out.
func NewStream(cfg StreamConfig, p *Pipeline, out Sink) *Stream {
	if p == nil {
		p = New()
	}
	p.fieldsUnread()
	st := &Stream{
		tenant: cfg.Tenant, base: pairs(cfg.Labels), pipe: p, next: out.Consumer, drops: cfg.Drops, collide: cfg.Collide, repaired: cfg.Repaired,
		onAck: cfg.OnAck, limits: out.Limits, borrowed: cfg.BorrowedLines, tap: out.Tap,
		meta: cfg.Metadata, byStream: cfg.ByStream,
	}
	for _, bp := range cfg.ByStream {
		bp.fieldsUnread()
	}
	st.rec.mdCap = 2 + len(cfg.Metadata)
	return st
}

// pairs flattens m to name, value, name, value...: read only when a new
// label set is rendered, and a map kept by every Stream was three times
// the size.
func pairs(m map[string]string) []string {
	out := make([]string, 0, 2*len(m))
	for k, v := range m {
		out = append(out, k, v)
	}
	return out
}

// outboxSize is how many entries a Stream hands over at once at most: about
// a read(2) of zap lines (16 KiB).
const outboxSize = 64

// outbox is where a Stream keeps entries until Flush: their array,
// and for a Stream that borrows lines, room for their metadata (reused, as
// the sink copies it: a slab per 16 lines was 2 % of podtail's CPU). Its
// maps are the record's while the Stream holds it: kept by every Stream,
// they were a quarter of a MB over a thousand files.
type outbox struct {
	es             []Entry
	md             []Label
	fields, labels map[string]string
}

// outboxes holds outboxes while no Stream uses them: a Stream holds one only
// between a read and its Flush, and with a thousand files one each was 16
// MB.
var outboxes = sync.Pool{New: func() any {
	return &outbox{es: make([]Entry, 0, outboxSize), md: make([]Label, 2*outboxSize),
		fields: map[string]string{}, labels: map[string]string{}}
}}

// takeOutbox gives s an outbox, and the record its metadata room when the
// lines are borrowed.
func (s *Stream) takeOutbox() {
	s.ob = outboxes.Get().(*outbox)
	s.out = s.ob.es[:0]
	s.rec.Fields, s.rec.Labels = s.ob.fields, s.ob.labels
	if s.borrowed {
		if n := max(s.rec.mdCap, 2) * outboxSize; len(s.ob.md) < n {
			s.ob.md = make([]Label, n) // kept by the pool for the next
		}
		s.rec.mdSlab = s.ob.md
	}
}

// returnOutbox gives an empty outbox back. Nothing may point into it after.
func (s *Stream) returnOutbox() {
	if s.borrowed {
		clear(s.ob.md)
		s.rec.mdSlab, s.rec.Metadata = nil, nil
	}
	clear(s.ob.fields)
	clear(s.ob.labels)
	s.rec.Fields, s.rec.Labels = nil, nil
	s.ob.es = s.out[:0]
	outboxes.Put(s.ob)
	s.ob, s.out = nil, nil
}

// Buffered is the number of entries taken by Send and not yet handed over.
func (s *Stream) Buffered() int { return len(s.out) }

// Flush hands the buffered entries to next. On error (ctx ended while the
// sink pushed back, or the sink closed) those not taken stay, in order, for
// the next Flush.
func (s *Stream) Flush(ctx context.Context) error {
	if len(s.out) == 0 {
		if s.ob != nil {
			s.returnOutbox() // taken for lines a stage dropped
		}
		return nil
	}
	n, err := s.next.Consume(ctx, s.out)
	left := copy(s.out, s.out[n:])
	clear(s.out[left:]) // let the lines go
	s.out = s.out[:left]
	if s.borrowed && !s.detached && left > 0 {
		// What stays must outlive the source's buffer. (Nothing is added
		// to the outbox until a Flush has emptied it, so this runs once.)
		s.detached = true
		for i := range s.out {
			e := &s.out[i]
			e.Line = strings.Clone(e.Line)
			for j := range e.Metadata {
				e.Metadata[j].Value = strings.Clone(e.Metadata[j].Value)
			}
		}
	}
	if left == 0 {
		s.detached = false
		s.returnOutbox()
	}
	return err
}

// LineLimit is the longest line the stream ships as is, and whether longer
// ones are dropped rather than truncated. Send applies the rule (see
// Limits.cutLine), so a source that must not buffer a line without bound
// stops at max+1 bytes, sends that, and passes over the rest of the line.
func (s *Stream) LineLimit() (max int, drop bool) { return s.limits.lineLimit() }

// CountDrop counts a line its source dropped (not sent) for reason.
func (s *Stream) CountDrop(reason string) {
	if s.drops != nil {
		s.drops.WithLabelValues(s.tenant, reason).Inc()
	}
}

// drop counts a line dropped for reason and moves the position past it.
func (s *Stream) drop(reason string, pos int64) {
	s.CountDrop(reason)
	s.Skip(pos)
}

// Send processes one line and, unless a stage drops it, hands it on.
// A dropped line is not acknowledged on its own: the next delivered entry's
// position covers it (Ack means "everything up to pos").
//
// Loki keeps one of two entries with the same labels, time and line, so an
// entry whose time is at or just behind its stream's previous entry (within
// Collide) is moved to 1 ns after it.
//
// labels are name/value pairs set on the record before the stages (e.g.
// "stream", "stdout") and again after them, so stages cannot change them;
// the source's own labels win over both. Stages cannot set tenant,
// application, version or stream: those come only from the source.
//
// The guards (see Limits) run here: a tenant not allowed, a line over the
// limit in drop mode, or a new stream beyond the tenant's bound is dropped,
// counted, and passed over like a line a stage dropped.
func (s *Stream) Send(ctx context.Context, t time.Time, line string, pos int64, labels ...string) error {
	if len(s.out) >= outboxSize || s.detached {
		// Full, or holding what a failed Flush kept: hand that over first
		// (in order, and so that borrowed and owned lines never mix).
		if err := s.Flush(ctx); err != nil {
			return err // this line is not taken
		}
	}
	if s.ob == nil {
		s.takeOutbox() // before the stages: they may set metadata
	}
	if s.tap != nil {
		if s.tw = s.tap.watch(s); s.tw != nil {
			s.tw.sent(s, t, line, labels)
		}
	}
	if !s.limits.Allowed(s.tenant) {
		s.limits.warn(s.tenant, DropTenantNotAllowed, "tenant not in limits.tenants; its lines are dropped")
		s.drop(DropTenantNotAllowed, pos)
		if s.tw != nil {
			s.tw.dropped(s, DropTenantNotAllowed, t, line, labels, nil)
		}
		return nil
	}
	if !utf8.ValidString(line) {
		line = strings.ToValidUTF8(line, "\uFFFD")
		if s.repaired != nil {
			s.repaired.WithLabelValues(s.tenant).Inc()
		}
	}
	line, keep := s.limits.cutLine(s.tenant, line)
	if !keep {
		s.drop(DropLineTooLong, pos)
		if s.tw != nil {
			s.tw.dropped(s, DropLineTooLong, t, line, labels, nil)
		}
		return nil
	}
	r := &s.rec
	r.Time, r.Line, r.Metadata = t, line, nil
	if len(r.Fields) > 0 { // usually empty (see fieldsUnread)
		clear(r.Fields)
	}
	clear(r.Labels)
	if r.Fields == nil {
		r.Fields = map[string]string{}
		r.Labels = map[string]string{}
	}
	for i := 0; i+1 < len(labels); i += 2 {
		r.Labels[labels[i]] = labels[i+1]
	}
	var reason string
	if s.tw == nil {
		keep, reason = s.pipeFor(labels).Process(r)
	} else {
		keep, reason = s.tw.process(s, s.pipeFor(labels), r, labels)
	}
	if !keep {
		s.drop(reason, pos)
		return nil
	}
	for i := 0; i+1 < len(labels); i += 2 {
		r.Labels[labels[i]] = labels[i+1]
	}
	ls := s.render(r.Labels, labels)
	if !s.admit(ls) {
		if !ls.hasLast && ls.listed {
			// Never used: not kept (a render cache may still lead to it),
			// so refused label sets cannot grow streams without bound.
			s.mu.Lock() // Ack reads streams
			s.streams.del(ls.key)
			ls.listed = false
			s.mu.Unlock()
		}
		s.drop(DropStreamLimit, pos)
		if s.tw != nil {
			s.tw.dropped(s, DropStreamLimit, t, line, labels, r)
		}
		return nil
	}
	if !ls.listed {
		s.relist(ls)
	}
	ns := r.Time.UnixNano()
	if ls.hasLast && ns <= ls.last && ls.last-ns <= int64(s.collide) {
		ns = ls.last + 1
	}
	if ns > ls.last || !ls.hasLast {
		ls.last, ls.hasLast = ns, true
	}
	// Fresh per record (reset above), so the entry may keep it: from a slab,
	// or for borrowed lines from the outbox's room, valid until Flush. The
	// source's own metadata goes after the stages': into the room kept for
	// it (no allocation), or as the stream's own slice when stages set none
	// (consumers copy what they keep and write nothing).
	md := r.Metadata
	if len(s.meta) > 0 {
		if len(md) == 0 {
			md = s.meta
		} else {
			md = append(md, s.meta...)
		}
	}
	s.mu.Lock()
	s.addPending(inflight{pos: pos, ns: ns, ls: ls})
	s.mu.Unlock()
	e := Entry{
		Tenant: s.tenant, Labels: ls.rendered, Time: time.Unix(0, ns), Line: r.Line, Metadata: md,
		Ack: s, Pos: pos, Replay: s.replayTo > 0 && pos <= s.replayTo,
	}
	// The record would otherwise keep its line, and the text it was cut
	// from, until this stream's next line: 4 MB with a thousand files.
	r.Line, r.Metadata = "", nil
	s.out = append(s.out, e) // taken: in pending, handed over at Flush
	if s.tw != nil {
		s.tw.ship(s, &s.out[len(s.out)-1], r, labels)
	}
	return nil
}

// pipeFor is the pipeline of a line sent with labels (see
// StreamConfig.ByStream).
func (s *Stream) pipeFor(labels []string) *Pipeline {
	if len(s.byStream) > 0 {
		for i := 0; i+1 < len(labels); i += 2 {
			if labels[i] == labelsStream {
				if p, ok := s.byStream[labels[i+1]]; ok {
					return p
				}
			}
		}
	}
	return s.pipe
}

// admitClockEvery: see Stream.admitCalls.
const admitClockEvery = 256

// admit reports whether ls may be used (limits' max_streams_per_tenant),
// asking Limits at most once a minute per stream.
func (s *Stream) admit(ls *lokiStream) bool {
	if s.limits == nil || s.limits.cfg.MaxStreamsPerTenant == 0 {
		return true
	}
	if ls.admitted {
		// A clock read per line showed in profiles; telling Limits a few
		// hundred lines late that a stream is still in use changes nothing
		// (it forgets streams after an hour).
		s.admitCalls++
		if s.admitCalls%admitClockEvery != 0 {
			return true
		}
	}
	now := time.Now()
	if ls.admitted && now.Sub(ls.admittedAt) < admitRefresh {
		return true
	}
	if !s.limits.admit(s.tenant, ls.key, now) {
		ls.admitted = false
		s.limits.warn(s.tenant, DropStreamLimit, "tenant at limits.max_streams_per_tenant; lines of new streams are dropped",
			zap.Int("max_streams_per_tenant", s.limits.cfg.MaxStreamsPerTenant))
		return false
	}
	ls.admitted, ls.admittedAt = true, now
	return true
}
