package source

import (
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

// journalSettle is drainSettle for the journal: conmon hands a container's
// last lines to journald's socket, and a busy journald stores them seconds
// later (the soak lost a container's last three lines to 300 ms). The
// journal keeps a removed container's entries, so waiting longer costs
// nothing but the reader's end coming later.
const journalSettle = 3 * time.Second

// journalPoll is how often a reader looks at the journal without a Watcher
// (with one, it waits to be woken: watchedPoll).
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
	pipes   Pipes
	journal Journal
	log     *zap.Logger
	metrics *Metrics
	fromEnd bool

	linesN, bytesN, lostN prometheus.Counter

	parking
	// What the stepping goroutine keeps between steps (park.go).
	r       *journal.Reader
	e       journal.Entry
	idle    time.Time     // when the reader last found nothing new
	settle  time.Duration // journalSettle; shorter in tests of fixed journals
	poll    time.Duration // the last wait
	unwatch func()

	stream *pipeline.Stream
	// skipTo: complete lines up to this entry were delivered before a
	// restart, though reading resumes earlier (positions.DeliveredCursor);
	// skipBy overrides it for a stream whose multi-line entry was not
	// (DeliveredCursors).
	skipTo journal.Cursor
	skipBy map[string]journal.Cursor
	// seq numbers the lines handed to the stream: their positions.
	seq int64
	// last is the cursor of the last entry read.
	last journal.Cursor
	// nread counts the MESSAGE bytes read (the reader's own); readPub
	// publishes it for Status once per batch read, ackedPub the count as
	// of the last line acknowledged (o.mu).
	nread             int64
	readPub, ackedPub atomic.Int64

	mu sync.Mutex
	// sent: cursors of the lines in flight, oldest first, by position.
	sent []sentLine
	// chains: lines being joined from partial entries, oldest first.
	chains []*journalChain
	joins  *joins[journal.Cursor]
}

// NewJournalOutput returns a reader of t's output from the journal.
func NewJournalOutput(t discovery.Target, j Journal, store *positions.Store, pipes Pipes, out pipeline.Sink, fromEnd bool, m *Metrics, log *zap.Logger) *JournalOutput {
	o := &JournalOutput{
		target: t, key: Key(t.ID), store: store, out: out, pipes: pipes, journal: j, metrics: m, fromEnd: fromEnd,
		log: outputLog(log, t),
	}
	o.parking.init()
	o.settle = journalSettle
	o.joins = newJoins[journal.Cursor](pipes.Join, &o.mu)
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
		ByStream: pipes.ByStream,
		Metadata: sourceMetadata(t),
	}, pipes.Default, out)
	return o
}

// Start reads until ctx ends or, once draining, until the end of what the
// journal holds for the container, without a goroutine while it waits
// (park.go), then calls done with what ended it.
func (o *JournalOutput) Start(ctx context.Context, done func(error)) {
	o.start(ctx, o.step, func(err error) {
		if o.unwatch != nil {
			o.unwatch()
		}
		if o.r != nil {
			o.r.Close()
		}
		done(err)
	})
}

// Run is Start, waiting for the end.
func (o *JournalOutput) Run(ctx context.Context) error { return runParked(ctx, o.Start) }

// step opens the journal the first time, reads what it holds for the
// container, and says how long to wait before looking again.
func (o *JournalOutput) step(ctx context.Context, now time.Time) next {
	if ctx.Err() != nil {
		return next{end: true}
	}
	if o.r == nil {
		if err := o.begin(); err != nil {
			return next{end: true, err: err}
		}
	}
	n, err := o.read(ctx, o.r, &o.e)
	if err == nil {
		// A stderr trace's entry is due although stdout goes on, or
		// nothing was written since.
		err = o.flushJoined(ctx, o.last, false)
	}
	if ferr := o.flush(ctx); err == nil {
		err = ferr
	}
	if err != nil || ctx.Err() != nil {
		return next{end: true, err: err}
	}
	if lost := o.r.Gaps(); lost > 0 {
		o.lostN.Add(float64(lost))
		o.log.Warn("journal entries were rotated or vacuumed away before podtail read them; this container's among them are lost",
			zap.Uint64("journal_entries", lost))
	}
	if n > 0 {
		o.idle, o.poll = time.Time{}, 0
		return next{again: true}
	}
	if o.settled(now, &o.idle, o.settle) {
		// The container is gone: a line it left unfinished is all there
		// will be of it, and so is an entry being joined.
		o.sendDangling(ctx)
		_ = o.flushJoined(ctx, o.last, true)
		return next{end: true, err: o.flush(ctx)}
	}
	// One look pollMin after output (a busy container's entries are read
	// in batches: a change reported meanwhile waits for it, see Nudge),
	// then the watcher wakes the reader, the poll only a safety net.
	// Without a watcher: from pollMin, doubling up to journalPoll.
	var wait time.Duration
	if o.unwatch != nil && o.poll > 0 {
		wait = watchedPoll
	} else {
		o.poll = max(pollMin, min(o.poll*2, journalPoll))
		wait = o.poll
	}
	return next{after: o.joins.wait(now, o.wait(wait))}
}

// begin opens the journal where reading resumes and subscribes to its
// changes.
func (o *JournalOutput) begin() error {
	after, stored, err := o.resume()
	if err != nil {
		return err
	}
	r, err := o.open(after)
	if err != nil {
		return err
	}
	o.r = r
	if o.fromEnd && !stored {
		if err := o.skipToEnd(r); err != nil {
			return err
		}
	}
	if o.journal.Watch != nil {
		o.unwatch = o.journal.Watch.OnChange(o.Nudge)
	}
	return nil
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
