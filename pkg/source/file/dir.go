// Package file tails the log files in a directory: rotation-safe (lumberjack's
// rename+create, copytruncate, gzip backups), resuming from positions that
// move only when Loki has acknowledged the lines. design.md tells the cycle
// step by step, naming each step's function; the list below says which
// file holds what.
package file

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// The directory tailer, file by concern (design.md tells the cycle):
//
//	dir.go       Dir, its step and cycle, reading the open files in turn
//	wake.go      the wake word and timer: the only state other goroutines touch
//	list.go      listing the directory: descriptor cache, seen and refused inodes
//	identify.go  a file's head, fingerprint and resume offset, as plain data
//	open.go      opening a file listed: identify it, give it a reader and a Stream
//	reader.go    one open file: reading chunks, cutting lines, sending them
//	eof.go       a file at its end: rotated, deleted, truncated, or live
//	bounds.go    OpenFiles (descriptors) and ReadSlots (directories reading per tenant)

const (
	defaultPoll = 250 * time.Millisecond
	// readSlice bounds one file's turn in a cycle, so the directory is
	// rescanned often while there is a backlog: at full speed lumberjack
	// makes a 1 MB file every ~40 ms and deletes its backup ~160 ms later,
	// and a file opened in time is safe (the descriptor keeps its data).
	readSlice = 20 * time.Millisecond
	// heldBackRelist: while the sink pushes back and inotify watches the
	// directory, a waiting reader stops waiting to list the directory when
	// a name in it changes (a rotation), and at least this often. (Without
	// inotify, every readSlice.) Waking every readSlice regardless listed
	// each of a thousand held-back directories 20 times a second: with a
	// small queue that doubled podtail's syscall time.
	heldBackRelist = time.Second
	// watchedPoll is the longest a quiet directory that inotify watches
	// waits without being woken: a write, or a name coming, going or
	// moving wakes it at once, and an overflow of inotify's queue wakes
	// every tailer, so the poll is only a safety net. Polling each of a
	// thousand idle directories every poll_interval (250 ms) was most of
	// podtail's CPU at rest (make bench's idle scenario: 568 CPU-s an
	// hour), and every 5 s still a third of it. The container readers
	// back off the same way (source.watchedPoll).
	watchedPoll = 5 * time.Minute
	// batchLook is how soon a watched tailer that just read something looks
	// again; a write reported while a look is due within batchGap is left
	// to it. At 1,000 lines a second written a line at a time, a step per
	// write was a third of podtail's CPU (docs/capacity.md).
	batchLook = 10 * time.Millisecond
	batchGap  = 2 * batchLook
	// readBudget is bytes per file per cycle, so one busy file cannot
	// starve the others.
	readBudget  = 4 << 20
	drainSettle = 300 * time.Millisecond
)

// Config is one directory to tail.
type Config struct {
	// Dir is the directory as podtail sees it (host_prefix applied). It is
	// not read while any component of its path is a symlink.
	Dir    string
	Tenant string
	// Labels returns the Loki labels for a file of the directory, by name
	// (backups included: "app_v1-2026-11-25T01-02-03.000.log.gz"), or false
	// to leave the file alone.
	Labels func(name string) (map[string]string, bool)
	// Stages returns, for the file of that name, its stages (each file gets
	// its own, as stages may keep per-stream state; nil: lines are shipped
	// as they are) and its joiner of multi-line entries (Go panics, stack
	// traces; nil: every line is an entry). By name, as pipeline.apps may
	// choose by the version in a file's name. A joined entry's position is
	// its last line's, so an entry still open is read again after a
	// restart. Nil Stages: neither.
	Stages func(name string) (*pipeline.Pipeline, *pipeline.Multiline)
	// Match says which files of the directory are read, by name: the
	// include and exclude globs and the rotated copies of included files
	// (files.include; discovery.FileRules.Reads). A name ending in .gz is
	// read as gzip. Nil: *.log and *.log.gz.
	Match func(name string) bool
	// Metadata is structured metadata of the directory's source (its
	// container, image, pod, host), on every entry of its files.
	Metadata []pipeline.Label
	// Poll is how often the directory is checked when no inotify event comes.
	Poll time.Duration
	// OpenFiles bounds the files open at once across directories; nil: no
	// bound.
	OpenFiles *OpenFiles
	// ReadSlots bounds the directories of one tenant reading at once; nil:
	// no bound.
	ReadSlots *ReadSlots
	// Watch is the inotify watcher shared by the tailers; nil: the tailer
	// makes its own.
	Watch *Watcher
}

// Dir tails the *.log files of one directory and reads *.log.gz backups
// that hold lines not yet delivered. One step at a time reads all of a
// directory's files, older files first, so a stream's lines stay in order
// across a rotation.
//
// Who touches what: w (wake.go) is the only state other goroutines touch
// (inotify's callback, Wake and SetDraining from the scheduler, the timer,
// a read slot granted, ctx's end). Start sets ctx, done, waiter, stopCtx
// and stopWatch before the first step. Every other field belongs to the
// goroutine stepping the tailer (one at a time, see Dir.steps), and the
// sink's acknowledgements reach only the positions store (see Dir.acked).
type Dir struct {
	cfg     Config
	store   *positions.Store
	out     pipeline.Sink
	metrics *Metrics
	log     *zap.Logger
	prefix  string // positions keys of this directory's files (KeyPrefix)
	clock   clockwork.Clock

	w waker

	ctx       context.Context
	done      func(error)
	waiter    *slotWaiter
	stopCtx   func() bool
	stopWatch func()

	// readers are the open files, by inode; seq numbers them in the order
	// opened, which is the order they are read in.
	readers map[uint64]*reader
	seq     int
	// slot: a read slot held for this cycle (the step took a grant, or
	// tryAcquire found one); needSlot: the cycle found none and left
	// reading to the next, after a wait in line.
	slot     bool
	needSlot bool
	// idleSince is when steps stopped progressing (zero while they do).
	idleSince time.Time
	// backlog: the last cycle stopped with more to read, so the next may
	// read on without listing (see listEvery).
	backlog bool
	// watched: inotify watches the directory.
	watched bool
	// unsettled: the last cycle left work that no inotify event announces
	// (the directory not listed, a push the sink refused, a file truncated
	// in place to open anew, a file left unopened for lack of an open-file
	// slot, a gzip backup still being written): the next cycle comes after
	// the poll, not later.
	unsettled bool

	ls listing     // the directory's entries (list.go)
	id identifying // what the files read are (identify.go)
	// warned holds the warnings given once until their cause goes away.
	warned map[string]bool
	// shown is readers again, for Files (the status page) to read from
	// another goroutine.
	shown shown
}

// KeyPrefix is what the positions keys of dir's files start with: a file's
// key is "file:<dir>#<fingerprint>".
func KeyPrefix(dir string) string { return "file:" + filepath.Clean(dir) + "#" }

// NewDir returns a tailer for cfg.Dir.
func NewDir(cfg Config, store *positions.Store, out pipeline.Sink, m *Metrics, log *zap.Logger) *Dir {
	if cfg.Poll <= 0 {
		cfg.Poll = defaultPoll
	}
	d := &Dir{
		cfg: cfg, store: store, out: out, metrics: m, clock: clockwork.NewRealClock(),
		log:     log.WithLazy(zap.String("dir", cfg.Dir), zap.String("tenant", cfg.Tenant)), // lazy: 500 eager clones were 1 MB
		prefix:  KeyPrefix(cfg.Dir),
		readers: map[uint64]*reader{}, warned: map[string]bool{},
		ls: newListing(), id: newIdentifying(),
	}
	d.w.word.Store(stepping) // until Start: kicks before it only set reasons
	return d
}

// wait is what a step asks for next.
type wait struct {
	again bool          // it progressed: step again now
	end   bool          // the tailer is done (err: why, nil when drained or ctx ended)
	err   error         //
	slot  bool          // queue for a read slot
	after time.Duration // the timer: poll, or the longest wait in line for a slot
}

// step runs one cycle and says what comes next. woke holds the reasons it
// was woken for (see wake.go).
func (d *Dir) step(now time.Time, woke uint32) wait {
	if woke&granted != 0 {
		d.slot = true
		d.w.unset(queued)
	}
	progressed, err := d.cycle(d.ctx, now, woke&relist != 0)
	d.dropSlot() // not used: no file was left to read
	if err != nil || d.ctx.Err() != nil {
		return wait{end: true, err: err}
	}
	if d.needSlot {
		// Queued for a read slot, for the next cycle to read with. Like a
		// wait on the sink (sinkWait), the wait also ends when a name in
		// the directory changes, or after relistEvery, and the next cycle
		// then lists the directory first (it stays in line), so a rotated
		// file is opened at once however long the tenant's other
		// directories read.
		d.needSlot = false
		return wait{slot: true, after: d.relistEvery()}
	}
	if progressed {
		d.idleSince = time.Time{}
		return wait{again: true}
	}
	if d.idleSince.IsZero() {
		d.idleSince = now
		if d.watched {
			// Just read something: one look batchLook later, the writes
			// inotify reports meanwhile left to it (changed), so that an
			// app writing a line at a time is read in batches, not a step
			// (a read, an lstat) per write.
			return wait{after: batchLook}
		}
	}
	if d.w.has(draining) && now.Sub(d.idleSince) >= drainSettle {
		return wait{end: true}
	}
	return wait{after: d.idlePoll(now)}
}

// idlePoll is how long a step that found nothing waits for the next look
// unless woken: the poll, or while inotify watches the directory and the
// cycle left nothing unsettled, as long as the directory has been quiet,
// up to watchedPoll. Not while draining (the tailer ends drainSettle after
// its last progress), while a file just written is unopened (its writes
// end no wait: see listing.unopened), or while a multi-line entry waits to
// be completed by its max_wait, which only a step notices.
func (d *Dir) idlePoll(now time.Time) time.Duration {
	if !d.watched || d.unsettled || d.ls.unopened || d.w.has(draining) || d.joining() {
		return d.cfg.Poll
	}
	return max(d.cfg.Poll, min(now.Sub(d.idleSince), watchedPoll))
}

// joining reports whether a reader holds a multi-line entry not yet
// complete or not yet sent.
func (d *Dir) joining() bool {
	for _, r := range d.readers {
		if r.ml != nil && (r.ml.Pending() > 0 || len(r.joined) > 0) {
			return true
		}
	}
	return false
}

// relistEvery is the longest a wait for the sink or a read slot lasts
// before the directory is listed again: heldBackRelist while inotify
// says when a name changes, readSlice without it, or while a file just
// written is not open yet (see listing.unopened).
func (d *Dir) relistEvery() time.Duration {
	if !d.watched || d.ls.unopened {
		return readSlice
	}
	return heldBackRelist
}

// cycle looks for new files (unless it is reading a backlog on), then reads
// every open file as far as it goes (up to a budget). It reports whether
// anything happened.
func (d *Dir) cycle(ctx context.Context, now time.Time, relist bool) (progressed bool, err error) {
	d.unsettled = false
	// A write inotify reports is no name changing (that sets relist): in a
	// watched directory it needs no listing, nor does a backlog read on.
	// Listing at each write of an app writing a line at a time was half of
	// podtail's CPU at a few thousand lines a second (docs/capacity.md).
	if !relist && !d.ls.due(now, d.watched) && (d.backlog || (d.watched && !d.ls.unopened)) {
		progressed, err = d.readAll(ctx)
		d.backlog = progressed && err == nil
		return progressed, err
	}
	defer func() { d.backlog = progressed && err == nil }()
	if fresh, ok := d.list(now); ok {
		progressed = d.openAll(fresh, now)
		d.forget(now) // after opening: a file opened this cycle is live
		if !d.watched {
			d.rewatch()
		}
	} else {
		d.unsettled = true // not listed (gone, or refused): retried at the poll
		if d.watched {
			// A directory removed takes its inotify watch with it: one
			// created again at the path is watched once it is listed.
			d.unwatch()
		}
	}
	read, err := d.readAll(ctx)
	return progressed || read, err
}

// readAll reads every open file, oldest first.
func (d *Dir) readAll(ctx context.Context) (bool, error) {
	rs := make([]*reader, 0, len(d.readers))
	for _, r := range d.readers {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].seq < rs[j].seq })
	progressed := false
	if len(rs) > 0 {
		if !d.slot && !d.cfg.ReadSlots.tryAcquire(d.cfg.Tenant) {
			// The tenant's other directories are reading: the step queues
			// for a slot; the next cycle goes on here.
			d.needSlot = true
			return ctx.Err() == nil, nil
		}
		d.slot = true
		defer d.dropSlot()
	}
	// A bounded wait on the sink: while Loki pushes back, the loop must still
	// list the directory and open new files, or a fast rotator could rename,
	// compress and delete a file never opened. An open descriptor keeps a
	// file's data after it is deleted.
	wctx, stopWait := d.sinkWait(ctx)
	defer stopWait()
	for _, r := range rs {
		n, eof, err := r.read(wctx, d.clock.Now().Add(readSlice))
		d.id.readTo[r.key] = r.off
		if errors.Is(err, errIncomplete) {
			d.close(r) // reopened next cycle, resuming at readTo
			d.unsettled = true
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return progressed, nil
			}
			if errors.Is(err, errSliceOver) || wctx.Err() != nil {
				// Slice over, or the directory changed while the sink held
				// the reader back: scan, then go on where it stopped.
				return true, nil
			}
			return progressed, err
		}
		if !eof {
			return true, nil // more to read: scan first, then go on
		}
		progressed = progressed || n > 0
		if err := r.flush(wctx, false); err != nil {
			d.unsettled = true
			return progressed, nil // pushed back: the next cycle sends it
		}
		d.atEOF(wctx, r)
	}
	return progressed, nil
}

// dropSlot gives back the read slot the cycle held.
func (d *Dir) dropSlot() {
	if d.slot {
		d.slot = false
		d.cfg.ReadSlots.release(d.cfg.Tenant)
	}
}

// stages are the stages and joiner of the file name (Config.Stages).
func (d *Dir) stages(name string) (*pipeline.Pipeline, *pipeline.Multiline) {
	if d.cfg.Stages == nil {
		return nil, nil
	}
	return d.cfg.Stages(name)
}
