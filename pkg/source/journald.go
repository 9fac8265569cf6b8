package source

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/journal"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// Journal says where the systemd journal is, for containers of the journald
// log driver.
type Journal struct {
	Dirs  []string         // journal roots as podtail sees them (host_prefix applied)
	Watch *journal.Watcher // nil: readers poll
	// Maps shares the journal files' mappings between the readers (nil:
	// each maps its own; 200 readers' mappings then counted 2.3 GB of RSS).
	Maps *journal.Maps
}

// The journal fields a container reader needs. conmon (2.1) writes one entry
// per line: MESSAGE with the line's newline, PRIORITY 6 for stdout and 3 for
// stderr, CONTAINER_PARTIAL_MESSAGE=true on the parts of a line it split.
const (
	fieldMessage  = "MESSAGE"
	fieldPriority = "PRIORITY"
	fieldPartial  = "CONTAINER_PARTIAL_MESSAGE"
	fieldID       = "CONTAINER_ID_FULL"
)

// journalPoll is how often a reader looks at the journal without a Watcher
// (or between its wake-ups, in case one was missed).
const journalPoll = time.Second

// JournalOutput reads one container's stdout and stderr from the systemd
// journal, where Podman's journald log driver (conmon) writes them. It finds
// the container's entries through the journal files' own index (the data
// object CONTAINER_ID_FULL=<id> links every entry holding it), so it reads
// only its container's entries, and it keeps working while the Podman
// service is down and after the container is removed (the journal keeps its
// lines). Positions are journal cursors, stored only once Loki has
// acknowledged everything up to them.
type JournalOutput struct {
	target  discovery.Target
	key     string
	store   *positions.Store
	out     pipeline.Sink
	pipe    *pipeline.Pipeline
	journal Journal
	log     *zap.Logger
	metrics *Metrics
	fromEnd bool

	linesN, bytesN, lostN prometheus.Counter

	draining atomic.Bool
	wake     chan struct{}

	stream *pipeline.Stream
	// skipTo: complete lines up to this entry were delivered before a
	// restart, though reading resumes earlier (positions.DeliveredCursor).
	skipTo journal.Cursor
	// seq numbers the lines handed to the stream: their positions.
	seq int64
	// last is the cursor of the last entry read.
	last journal.Cursor

	mu sync.Mutex
	// sent: cursors of the lines in flight, oldest first, by position.
	sent []sentLine
	// chains: lines being joined from partial entries, oldest first.
	chains []*journalChain
}

// sentLine is a line handed over: its position, and the cursor of its last
// entry.
type sentLine struct {
	pos    int64
	cursor journal.Cursor
}

// journalChain is a line conmon split into partial entries: the cursor of
// the entry read before its first part (where reading must resume while
// the line is not delivered), and its joined content so far.
type journalChain struct {
	stream  string
	before  journal.Cursor
	time    time.Time
	content []byte
	// skipping: the line went over the line limit and was shipped truncated
	// (or dropped); its remaining parts are passed over.
	skipping bool
	// pos is the position of the line sent for it (0: none yet, or passed
	// over after a restart); done: its last part was read. It is delivered
	// once done and pos acknowledged.
	pos  int64
	done bool
}

// NewJournalOutput returns a reader of t's output from the journal.
func NewJournalOutput(t discovery.Target, j Journal, store *positions.Store, p *pipeline.Pipeline, out pipeline.Sink, fromEnd bool, m *Metrics, log *zap.Logger) *JournalOutput {
	o := &JournalOutput{
		target: t, key: Key(t.ID), store: store, out: out, pipe: p, journal: j, metrics: m, fromEnd: fromEnd,
		log:  log.WithLazy(zap.String("container", t.Name), zap.String("id", t.ID[:min(12, len(t.ID))]), zap.String("tenant", t.Tenant)),
		wake: make(chan struct{}, 1),
	}
	o.linesN, o.bytesN = m.lines.WithLabelValues(t.Tenant), m.bytes.WithLabelValues(t.Tenant)
	o.lostN = m.journalLost.WithLabelValues(t.Tenant)
	o.stream = pipeline.NewStream(pipeline.StreamConfig{
		Tenant: t.Tenant,
		Labels: t.StreamLabels(),
		// journald stamps entries in microseconds, and a burst of lines
		// shares one: as for conmon's times, every collision is resolved.
		Collide:  time.Hour,
		Drops:    m.dropped,
		Repaired: m.repaired,
		OnAck:    o.acked,
	}, p, out)
	return o
}

// SetDraining tells the reader whether the container has stopped: a
// draining reader reads to the end of what the journal holds and returns.
func (o *JournalOutput) SetDraining(d bool) {
	if o.draining.Swap(d) != d {
		o.Wake()
	}
}

// Wake makes the reader look at the journal now.
func (o *JournalOutput) Wake() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Run reads until ctx ends, or, once draining, until the end of what the
// journal holds for the container.
func (o *JournalOutput) Run(ctx context.Context) error {
	after, err := o.resume()
	if err != nil {
		return err
	}
	r, err := o.open(after)
	if err != nil {
		return err
	}
	defer r.Close()
	if o.fromEnd && after.IsZero() {
		if err := o.skipToEnd(r); err != nil {
			return err
		}
	}
	var changed <-chan struct{}
	if o.journal.Watch != nil {
		ch, cancel := o.journal.Watch.Subscribe()
		defer cancel()
		changed = ch
	}
	var (
		e    journal.Entry
		idle time.Time
	)
	for {
		if ctx.Err() != nil {
			return nil
		}
		n, err := o.read(ctx, r, &e)
		if ferr := o.flush(ctx); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		if lost := r.Gaps(); lost > 0 {
			o.lostN.Add(float64(lost))
			o.log.Warn("journal entries were rotated or vacuumed away before podtail read them; this container's among them are lost",
				zap.Uint64("journal_entries", lost))
		}
		if n > 0 {
			idle = time.Time{}
			continue
		}
		if idle.IsZero() {
			idle = time.Now()
		}
		if o.draining.Load() && time.Since(idle) >= drainSettle {
			// The container is gone: a line it left unfinished is all
			// there will be of it.
			o.sendDangling(ctx)
			return o.flush(ctx)
		}
		wait := journalPoll
		if o.draining.Load() {
			wait = drainSettle
		}
		select {
		case <-ctx.Done():
			return nil
		case <-o.wake:
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// resume is the cursor reading starts after: the stored one, or none.
func (o *JournalOutput) resume() (journal.Cursor, error) {
	p, ok := o.store.Get(o.key)
	if !ok || p.Cursor == "" {
		return journal.Cursor{}, nil
	}
	after, err := journal.ParseCursor(p.Cursor)
	if err != nil {
		// Not ours to guess: reading from the start could re-send the
		// container's whole history.
		return journal.Cursor{}, fmt.Errorf("positions %s: %s: %w", o.store.Path(), o.key, err)
	}
	if p.DeliveredCursor != "" {
		if o.skipTo, err = journal.ParseCursor(p.DeliveredCursor); err != nil {
			return journal.Cursor{}, fmt.Errorf("positions %s: %s: delivered_cursor: %w", o.store.Path(), o.key, err)
		}
	}
	o.stream.Restore(p.Last)
	o.last = after
	return after, nil
}

func (o *JournalOutput) open(after journal.Cursor) (*journal.Reader, error) {
	if !anyExists(o.journal.Dirs) {
		// Not an error to stop on: the directories may be mounted later, and
		// the reader finds them when they are. But nothing can be read now.
		o.log.Error("none of the journal directories exists: this journald container's output cannot be read "+
			"(mount /var/log/journal and /run/log/journal, or set podman.journal_dirs)", zap.Strings("dirs", o.journal.Dirs))
	}
	opts := journal.Options{
		Dirs:   o.journal.Dirs,
		Match:  fieldID + "=" + o.target.ID,
		After:  after,
		Fields: []string{fieldMessage, fieldPriority, fieldPartial},
		Maps:   o.journal.Maps,
	}
	r, err := journal.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("container %s: journal: %w", o.target.Name, err)
	}
	if o.store.Resumed() {
		// An earlier podtail may have sent lines past the stored cursor
		// without the acknowledgement reaching the positions file: the
		// sink checks that many lines with Loki before sending them again.
		n, err := countEntries(opts)
		if err != nil {
			r.Close()
			return nil, err
		}
		o.stream.ReplayTo(n)
	}
	o.log.Debug("reading container output from the journal", zap.Strings("dirs", o.journal.Dirs), zap.String("after", after.String()))
	return r, nil
}

// anyExists says whether any of dirs exists.
func anyExists(dirs []string) bool {
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			return true
		}
	}
	return false
}

// countEntries is how many entries the journal holds now past opts.After.
func countEntries(opts journal.Options) (int64, error) {
	opts.Fields = []string{fieldPartial}
	r, err := journal.Open(opts)
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	defer r.Close()
	var (
		e journal.Entry
		n int64
	)
	for {
		ok, err := r.Next(&e)
		if err != nil {
			return n, fmt.Errorf("journal: %w", err)
		}
		if !ok {
			return n, nil
		}
		n++
	}
}

// skipToEnd passes over what the journal holds now (discovery.existing_from
// "end") and stores the position there.
func (o *JournalOutput) skipToEnd(r *journal.Reader) error {
	var e journal.Entry
	for {
		ok, err := r.Next(&e)
		if err != nil {
			return fmt.Errorf("container %s: journal: %w", o.target.Name, err)
		}
		if !ok {
			break
		}
		o.last = e.Cursor
	}
	if !o.last.IsZero() {
		o.store.Put(o.key, positions.Position{Cursor: o.last.String()})
	}
	return nil
}

// read hands on what the journal holds now, a bounded batch at a time, and
// returns how many entries it read.
func (o *JournalOutput) read(ctx context.Context, r *journal.Reader, e *journal.Entry) (int, error) {
	const batch = 1024 // entries between two hand-overs to the sink
	n := 0
	for n < batch {
		if ctx.Err() != nil {
			return n, nil // stopping: what is not sent is read again after a restart
		}
		ok, err := r.Next(e)
		if err != nil {
			// A damaged journal file or entry: the reader skips it, and
			// says so once (podtail_source_malformed_lines_total is for
			// container log lines not in CRI format, not for this).
			o.log.Error("journal", zap.Error(err))
			continue
		}
		if !ok {
			return n, nil
		}
		n++
		if err := o.entry(ctx, e); err != nil {
			return n, err
		}
		o.last = e.Cursor
	}
	return n, nil
}

// entry ships one journal entry, or joins it to the line it is part of.
func (o *JournalOutput) entry(ctx context.Context, e *journal.Entry) error {
	msg, _ := e.Field(fieldMessage)
	o.bytesN.Add(float64(len(msg)))
	// conmon ends every entry, partial ones included, with the newline it
	// split at or a newline of its own; a partial entry's content has none.
	msg = bytes.TrimSuffix(msg, []byte{'\n'})
	prio, _ := e.Field(fieldPriority)
	stream := streamOfPriority(prio)
	partialV, _ := e.Field(fieldPartial)
	partial := string(partialV) == "true"

	ch := o.chain(stream)
	if ch != nil && ch.skipping {
		if !partial {
			o.mu.Lock()
			o.endChain(ch)
			o.mu.Unlock()
		}
		return nil
	}
	limit, _ := o.stream.LineLimit()
	if partial && (ch == nil || len(ch.content)+len(msg) <= limit) {
		if ch == nil {
			ch = &journalChain{stream: stream, before: o.last, time: e.Time()}
			o.mu.Lock()
			o.chains = append(o.chains, ch)
			o.mu.Unlock()
		}
		ch.content = append(ch.content, msg...)
		return nil
	}
	t, line := e.Time(), string(msg)
	if ch != nil {
		t, line = ch.time, string(ch.content)+line
	}
	var pos int64
	if o.skipTo.IsZero() || cursorAfter(e.Cursor, o.skipTo) {
		var err error
		if pos, err = o.send(ctx, t, stream, line, e.Cursor); err != nil {
			return err
		}
	}
	if ch == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ch.pos = pos
	if partial {
		// Over the line limit with parts still to come: what was sent was
		// truncated (or dropped) by the stream; the rest is passed over
		// until the line's last part.
		ch.skipping, ch.content = true, nil
		return nil
	}
	o.endChain(ch)
	return nil
}

// chain is the line being joined on stream, or nil.
func (o *JournalOutput) chain(stream string) *journalChain {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ch := range o.chains {
		if ch.stream == stream && !ch.done {
			return ch
		}
	}
	return nil
}

// endChain records that ch's last part was read. o.mu is held.
func (o *JournalOutput) endChain(ch *journalChain) {
	ch.done, ch.content = true, nil
	if ch.pos == 0 {
		// Nothing was sent for it (delivered before a restart): nothing
		// holds the resume point back.
		for i, c := range o.chains {
			if c == ch {
				o.chains = append(o.chains[:i], o.chains[i+1:]...)
				break
			}
		}
	}
}

// send hands one line to the stream and returns its position.
func (o *JournalOutput) send(ctx context.Context, t time.Time, stream, line string, cursor journal.Cursor) (int64, error) {
	o.mu.Lock()
	o.seq++
	pos := o.seq
	o.sent = append(o.sent, sentLine{pos: pos, cursor: cursor})
	o.mu.Unlock()
	if err := o.stream.Send(ctx, t, line, pos, labels.Stream, stream); err != nil {
		return pos, o.handOver(ctx, err)
	}
	o.linesN.Inc()
	return pos, nil
}

// sendDangling ships the lines left unfinished by a container that is gone.
func (o *JournalOutput) sendDangling(ctx context.Context) {
	o.mu.Lock()
	var open []*journalChain
	for _, ch := range o.chains {
		if !ch.done && !ch.skipping && len(ch.content) > 0 {
			open = append(open, ch)
		}
	}
	o.mu.Unlock()
	for _, ch := range open {
		pos, err := o.send(ctx, ch.time, ch.stream, string(ch.content), o.last)
		if err != nil {
			return
		}
		o.mu.Lock()
		ch.pos = pos
		o.endChain(ch)
		o.mu.Unlock()
	}
}

func (o *JournalOutput) flush(ctx context.Context) error {
	return o.handOver(ctx, o.stream.Flush(ctx))
}

// handOver is the outcome of handing entries to the stream: nil once ctx
// has ended (what was not handed over is read again after a restart).
func (o *JournalOutput) handOver(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("container %s: %w", o.target.Name, err)
}

// acked stores the cursor up to which everything was delivered. Reading
// must resume before the first part of a joined line not yet delivered, so
// the cursor stays there and DeliveredCursor records the rest.
func (o *JournalOutput) acked(pos int64, last map[string]int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := 0
	for i < len(o.sent) && o.sent[i].pos <= pos {
		i++
	}
	if i == 0 {
		return
	}
	delivered := o.sent[i-1].cursor
	if i == len(o.sent) {
		// Give the array back: kept, it stays as large as the most this
		// reader ever had in flight (72 bytes a line), for each container.
		o.sent = nil
	} else {
		o.sent = append(o.sent[:0], o.sent[i:]...)
	}
	resume := delivered
	kept := o.chains[:0]
	for _, ch := range o.chains {
		if ch.done && ch.pos <= pos {
			continue // delivered whole
		}
		kept = append(kept, ch)
		if cursorAfter(resume, ch.before) {
			resume = ch.before
		}
	}
	clear(o.chains[len(kept):])
	o.chains = kept
	p := positions.Position{Cursor: resume.String(), Last: last}
	if resume.IsZero() {
		p.Cursor = ""
	}
	if resume != delivered {
		p.DeliveredCursor = delivered.String()
	}
	o.store.Put(o.key, p)
}

// cursorAfter reports whether a is past b in the journal: by sequence number
// within one journal (same seqnum ID), else by time.
func cursorAfter(a, b journal.Cursor) bool {
	if a.SeqnumID == b.SeqnumID {
		return a.Seqnum > b.Seqnum
	}
	return a.Realtime > b.Realtime
}

// streamOfPriority tells stdout from stderr: conmon 2.1 logs stdout at
// PRIORITY 6 (info) and stderr at 3 (err). conmon 2.2 also takes a line's
// own "<N>" prefix as its priority (sd-daemon style); such lines are put on
// stderr when N is err or worse (0-3), else on stdout.
func streamOfPriority(p []byte) string {
	if len(p) == 1 && p[0] >= '0' && p[0] <= '3' {
		return Stderr
	}
	return Stdout
}
