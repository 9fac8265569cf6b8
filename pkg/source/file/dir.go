package file

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

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
	// reopenDirEvery: the directory stays open between cycles for this
	// long, then is opened again from / (see Dir.openDir).
	reopenDirEvery = time.Second
	// listEvery is the least time between two listings while a backlog is
	// read (cycles follow each other every readSlice then). Listing every
	// 20 ms was a tenth of podtail's CPU with 500 directories held back by
	// Loki; lumberjack's backups live ~160 ms at full speed, so each is
	// still seen a few times.
	listEvery = 50 * time.Millisecond
	// listEveryWatched is listEvery for a directory inotify watches: the
	// listing while a backlog is read was still a twentieth of podtail's CPU
	// at 50 ms.
	listEveryWatched = time.Second
	// readChunk is one read(2): ~70 lines of zap JSON. A directory's
	// goroutine holds one while the sink pushes back, and podtail may have
	// hundreds of directories: 64 KiB each was tens of MB.
	readChunk   = 16 << 10
	textChunk   = 4 << 10 // see reader.lines
	readBudget  = 4 << 20 // bytes per file per cycle, so one busy file cannot starve the others
	drainSettle = 300 * time.Millisecond
	forgetAfter = time.Hour
	gzSuffix    = ".gz"
	logSuffix   = ".log"
	forgetEvery = time.Minute
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
	// Pipeline returns the stages for one file (each file gets its own, as
	// stages may keep per-stream state). Nil: lines are shipped as they are.
	Pipeline func() *pipeline.Pipeline
	// Multiline returns a joiner of multi-line entries (Go panics, stack
	// traces) for one file, or nil for none. A joined entry's position is
	// its last line's, so an entry still open is read again after a restart.
	Multiline func() *pipeline.Multiline
	// Poll is how often the directory is checked when no inotify event comes.
	Poll time.Duration
	// Open bounds the files open at once across directories; nil: no bound.
	Open *Limiter
	// Readers bounds the directories of one tenant reading at once; nil: no
	// bound.
	Readers *Readers
	// Watch is the inotify watcher shared by the tailers; nil: the tailer
	// makes its own.
	Watch *Watcher
}

// Limiter bounds open files.
type Limiter struct{ slots chan struct{} }

// NewLimiter allows n files open at once.
func NewLimiter(n int) *Limiter { return &Limiter{slots: make(chan struct{}, n)} }

func (l *Limiter) tryAcquire() bool {
	if l == nil {
		return true
	}
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *Limiter) release() {
	if l != nil {
		<-l.slots
	}
}

// Readers bounds, per tenant, the directories reading at once. A reading
// directory holds a read buffer and the entries parsed from it, and while
// Loki pushes back it holds them until the sink takes them: with a thousand
// files in 500 directories all held back, that was 14 MB of a 44 MB live
// heap, for no gain, as the tenant's queue takes no more than a few
// readers' worth at a time. Per tenant, so a tenant Loki holds back keeps
// no other tenant from reading. A directory waiting for a slot is queued,
// and a slot given back goes to the first in line: no goroutine waits.
type Readers struct {
	n       int
	mu      sync.Mutex
	tenants map[string]*slots
}

type slots struct {
	used  int
	queue []*slotWaiter
}

// slotWaiter is one wait for a slot: grant is called with the slot (under
// Readers' lock: it must not block) when one is free.
type slotWaiter struct{ grant func(release func()) }

// NewReaders lets n directories of each tenant read at once.
func NewReaders(n int) *Readers {
	return &Readers{n: max(n, 1), tenants: map[string]*slots{}}
}

// tryAcquire takes one of tenant's slots if one is free; release gives it
// back. Nil Readers: no bound.
func (rs *Readers) tryAcquire(tenant string) (release func(), ok bool) {
	if rs == nil {
		return func() {}, true
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.free(tenant, rs.of(tenant))
}

// free takes one of t's slots (tenant's) if one is free. rs.mu must be held.
func (rs *Readers) free(tenant string, t *slots) (release func(), ok bool) {
	if t.used == rs.n {
		return nil, false
	}
	t.used++
	return rs.releaser(tenant), true
}

// of returns tenant's slots. rs.mu must be held.
func (rs *Readers) of(tenant string) *slots {
	t := rs.tenants[tenant]
	if t == nil {
		t = &slots{}
		rs.tenants[tenant] = t
	}
	return t
}

// releaser returns the function that gives a slot of tenant back, to the
// first waiter if any.
func (rs *Readers) releaser(tenant string) func() {
	return func() {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		t := rs.of(tenant)
		if len(t.queue) > 0 {
			w := t.queue[0]
			t.queue[0] = nil
			t.queue = t.queue[1:]
			w.grant(rs.releaser(tenant)) // the slot changes hands
			return
		}
		t.used--
	}
}

// wait queues w for one of tenant's slots; w.grant gets it, at once if one
// is free. Nil Readers: granted at once.
func (rs *Readers) wait(tenant string, w *slotWaiter) {
	if rs == nil {
		w.grant(func() {})
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	t := rs.of(tenant)
	if release, ok := rs.free(tenant, t); ok {
		w.grant(release)
		return
	}
	t.queue = append(t.queue, w)
}

// cancel takes w out of tenant's queue. It reports false when w is not in
// it: granted already (or never queued).
func (rs *Readers) cancel(tenant string, w *slotWaiter) bool {
	if rs == nil {
		return false
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	t := rs.of(tenant)
	for i, q := range t.queue {
		if q == w {
			t.queue = slices.Delete(t.queue, i, i+1)
			return true
		}
	}
	return false
}

// Dir tails the *.log files of one directory and reads *.log.gz backups
// that hold lines not yet delivered. One step at a time reads all of a
// directory's files, older files first, so a stream's lines stay in order
// across a rotation.
type Dir struct {
	cfg     Config
	store   *positions.Store
	out     pipeline.Sink
	metrics *Metrics
	log     *zap.Logger
	prefix  string

	draining atomic.Bool

	// A tailer has no goroutine while it waits (see Start): ctx and done
	// are Start's; kicks counts the kicks no step has answered yet (see
	// kick); timer ends the wait for a change (poll) or, while the tailer
	// is queued for a read slot (waiter, slotWait), the held-back relist;
	// given holds a slot granted while queued until a step takes it.
	ctx       context.Context
	done      func(error)
	kicks     atomic.Int32
	timer     *time.Timer
	stopCtx   func() bool
	stopWatch func()
	started   bool
	idleSince time.Time
	waiter    *slotWaiter
	slotWait  atomic.Bool
	given     atomic.Pointer[func()]

	readers map[uint64]*reader // open files, by inode
	// slot: a read slot granted for the next cycle (nil: none); needSlot:
	// the last cycle found none free and left reading to it.
	slot     func()
	needSlot bool
	// seen holds inodes finished or not ours, with their size and mtime then:
	// a finished file never changes, so a change means the inode was freed
	// and reused by a new file (lumberjack deletes a backup and creates the
	// next file at once, and the new file often gets the freed inode).
	seen   map[uint64]stamp
	keyOf  map[uint64]string // inode -> key of every present file identified
	known  map[string]Fingerprint
	readTo map[string]int64 // key -> furthest offset read by this process
	seq    int
	warned map[string]bool
	forgot time.Time
	// refused holds inodes of the directory not read (see refusal), each
	// counted and logged once, while an entry of the directory has it: a
	// refused file renamed is still refused, and a hard link stays refused
	// when its other name is removed (its content was someone else's).
	refused map[uint64]string
	// df is the directory, opened at dfAt; dirfd is its descriptor (-1
	// when not open): entries are listed, stat'ed and opened relative to
	// it, never by path.
	df    *os.File
	dfAt  time.Time
	dirfd int
	// listedAt is when the directory was last listed; backlog says the last
	// cycle stopped with more to read (see listEvery).
	listedAt time.Time
	backlog  bool
	// watched: inotify watches the directory. relist says a name in it
	// changed, or Wake was called, while a reader waited on the sink: the
	// next cycle lists the directory whatever listEvery says. stopWait ends
	// that wait (nil when no reader waits).
	watched  bool
	relist   atomic.Bool
	stopWait atomic.Pointer[context.CancelFunc]
	// unopened: the last listing left a file written to in the last second
	// unopened (not one whole line yet, or no open-file slot). Its writes
	// end no wait, and a fast rotator may rename and delete it within
	// heldBackRelist, so readers held back wait readSlice at most.
	unopened bool
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
		cfg: cfg, store: store, out: out, metrics: m,
		log:     log.WithLazy(zap.String("dir", cfg.Dir), zap.String("tenant", cfg.Tenant)), // lazy: 500 eager clones were 1 MB
		prefix:  KeyPrefix(cfg.Dir),
		readers: map[uint64]*reader{}, seen: map[uint64]stamp{}, keyOf: map[uint64]string{},
		known: map[string]Fingerprint{}, readTo: map[string]int64{}, warned: map[string]bool{},
		refused: map[uint64]string{}, dirfd: -1,
	}
	d.kicks.Store(1) // until Start: kicks before it are answered by its first step
	return d
}

// SetDraining tells the tailer its container has stopped: a draining tailer
// reads every file to its end and returns.
func (d *Dir) SetDraining(v bool) {
	if d.draining.Swap(v) != v {
		d.Wake()
	}
}

// Wake makes the tailer look at its directory now.
func (d *Dir) Wake() {
	d.interrupt()
	d.kick()
}

// interrupt ends a reader's wait on the sink, if one waits, so that the
// directory is listed now.
func (d *Dir) interrupt() {
	d.relist.Store(true)
	if stop := d.stopWait.Load(); stop != nil {
		(*stop)()
	}
}

// Start tails until ctx ends or, once draining, until everything is read,
// then calls done with what ended it (nil, or a read error). The tailer
// has no goroutine of its own: what wakes it (a change inotify reports,
// Wake, the poll timer, a read slot given, ctx's end) kicks it, and a kick
// starts a goroutine for the step it asks for unless one is stepping. With
// a goroutine each, 500 directories waiting held 2-3 MiB of stacks: Go
// shrinks a waiting goroutine's stack to no less than 4 KiB once a cycle
// has grown it.
func (d *Dir) Start(ctx context.Context, done func(error)) {
	d.ctx, d.done = ctx, done
	d.waiter = &slotWaiter{grant: d.granted}
	d.timer = time.AfterFunc(time.Hour, d.onTimer)
	d.timer.Stop()
	d.stopCtx = context.AfterFunc(ctx, d.kick)
	d.kicks.Store(0)
	d.kick()
}

// Run is Start, waiting for the end.
func (d *Dir) Run(ctx context.Context) error {
	ended := make(chan error, 1)
	d.Start(ctx, func(err error) { ended <- err })
	return <-ended
}

// kick asks for a step: on a goroutine started for it, unless a step is
// under way, which then takes one more.
func (d *Dir) kick() {
	if d.kicks.Add(1) == 1 {
		go d.steps()
	}
}

// steps takes steps until no kick is left unanswered, or the tailer ends
// (kicks then stay counted, and start nothing more).
func (d *Dir) steps() {
	for {
		d.kicks.Store(1) // the kicks so far: this step answers them all
		if d.step() {
			return
		}
		if d.kicks.CompareAndSwap(1, 0) {
			return
		}
	}
}

// step cycles until there is nothing to do now, then sets up what wakes
// it: the poll timer, or its place in the tenant's queue for a read slot.
// It reports whether the tailer ended.
func (d *Dir) step() bool {
	if !d.started {
		d.started = true
		d.stopWatch = d.watch()
	}
	for {
		if g := d.given.Swap(nil); g != nil {
			d.slot = *g
			d.slotWait.Store(false)
		}
		progressed, err := d.cycle(d.ctx)
		d.dropSlot() // not used: no file was left to read
		if err != nil || d.ctx.Err() != nil {
			d.end(err)
			return true
		}
		if d.needSlot {
			d.needSlot = false
			d.waitSlot()
			return false
		}
		if progressed {
			d.idleSince = time.Time{}
			continue
		}
		if d.idleSince.IsZero() {
			d.idleSince = time.Now()
		}
		if d.draining.Load() && time.Since(d.idleSince) >= drainSettle {
			d.end(nil)
			return true
		}
		d.timer.Reset(d.cfg.Poll)
		return false
	}
}

// waitSlot queues the tailer for one of its tenant's read slots, for the
// next cycle to read with. Like a wait on the sink (sinkWait), the wait
// also ends when a name in the directory changes, or after
// heldBackRelist, and the next cycle then lists the directory first (it
// stays in line), so a rotated file is opened at once however long the
// tenant's other directories read.
func (d *Dir) waitSlot() {
	every := heldBackRelist
	if !d.watched || d.unopened {
		every = readSlice
	}
	queued := d.slotWait.Swap(true)
	d.timer.Reset(every)
	if !queued {
		d.cfg.Readers.wait(d.cfg.Tenant, d.waiter)
	}
}

// granted is the read slot a queued tailer waited for (called under
// Readers' lock).
func (d *Dir) granted(release func()) {
	d.given.Store(&release)
	d.kick()
}

func (d *Dir) onTimer() {
	if d.slotWait.Load() {
		d.relist.Store(true)
	}
	d.kick()
}

// end undoes Start and says why the tailer ended.
func (d *Dir) end(err error) {
	d.timer.Stop()
	d.stopCtx()
	d.stopWatch()
	if d.slotWait.Swap(false) {
		d.cfg.Readers.cancel(d.cfg.Tenant, d.waiter) // false: granted, and given holds it
	}
	if g := d.given.Swap(nil); g != nil {
		(*g)()
	}
	d.dropSlot()
	d.closeAll()
	d.done(err)
}

// dropSlot gives back a slot granted and no cycle used.
func (d *Dir) dropSlot() {
	if d.slot != nil {
		d.slot()
		d.slot = nil
	}
}

// watch sets up inotify for the directory: a change kicks the tailer (nil
// Watch and no inotify: polling only). It returns what stops the watch.
func (d *Dir) watch() (stop func()) {
	w := d.cfg.Watch
	var closeOwn func() error
	if w == nil {
		own, err := NewWatcher(d.log)
		if err != nil {
			d.log.Warn("inotify unavailable; polling", zap.Error(err), zap.Duration("every", d.cfg.Poll))
		} else {
			closeOwn, w = own.Close, own
		}
	}
	stopWatch := func() {}
	if w != nil {
		stopW, err := w.Watch(d.cfg.Dir, d.changed)
		if err != nil {
			d.log.Info("cannot watch the directory (yet); polling", zap.Error(err))
		} else {
			d.watched, stopWatch = true, stopW
		}
	}
	return func() {
		stopWatch()
		if closeOwn != nil {
			_ = closeOwn()
		}
	}
}

// changed is inotify's word that something in the directory changed:
// renamed, a name came, went or moved (a rotation, which a reader held
// back by the sink must not miss). A write to a tailer queued for a read
// slot waits for the slot: a cycle per write would only find none free.
func (d *Dir) changed(renamed bool) {
	if renamed {
		d.interrupt()
	} else if d.slotWait.Load() {
		return
	}
	d.kick()
}

// cycle looks for new files, then reads every open file as far as it goes
// (up to a budget). It reports whether anything happened.
func (d *Dir) cycle(ctx context.Context) (progressed bool, err error) {
	relist := d.relist.Swap(false)
	every := listEvery
	if d.watched && !d.unopened {
		// inotify says when a name changes (relist): listing is only a
		// safety net then. (A file not yet opened, not a whole line yet, is
		// not a name change when its line ends: it is looked for often.)
		every = listEveryWatched
	}
	if d.backlog && time.Since(d.listedAt) < every && !relist {
		return d.readMore(ctx)
	}
	d.listedAt = time.Now()
	defer func() { d.backlog = progressed && err == nil }()
	df, err := d.openDir()
	if err != nil {
		var re *refusedError
		if errors.As(err, &re) {
			if !d.warned["refused"] {
				d.warned["refused"] = true
				d.metrics.refused.WithLabelValues(d.cfg.Tenant, re.reason).Inc()
				d.log.Warn("log directory not read: its path goes through a symlink, which podtail does not follow (give Podman the real path)",
					zap.String("symlink", re.path))
			}
		} else if !d.warned["readdir"] {
			d.warned["readdir"] = true
			d.log.Warn("cannot read log directory; retrying", zap.Error(err))
		}
		return d.readAll(ctx)
	}
	delete(d.warned, "readdir")
	delete(d.warned, "refused")
	entries, err := df.ReadDir(-1)
	if err != nil {
		d.log.Warn("cannot list log directory; retrying", zap.Error(err))
		d.closeDir()
		return d.readAll(ctx)
	}
	present := map[uint64]bool{}
	var fresh []candidate
	for _, e := range entries {
		name := e.Name()
		gz := strings.HasSuffix(name, logSuffix+gzSuffix)
		if !gz && !strings.HasSuffix(name, logSuffix) {
			continue
		}
		st, err := lstatAt(d.dirfd, name)
		if err != nil {
			continue
		}
		ino := st.ino
		present[ino] = true
		if d.readers[ino] != nil {
			continue
		}
		if _, ok := d.refused[ino]; ok {
			continue
		}
		if reason := refusal(st); reason != "" {
			d.refuse(name, ino, reason, st.mode)
			continue
		}
		if old, ok := d.seen[ino]; ok {
			if old == st.stamp() {
				continue
			}
			delete(d.seen, ino) // a new file on a reused inode
		}
		fresh = append(fresh, candidate{name: name, ino: ino, mtime: st.mtime, gz: gz})
	}
	// Older first: a backup's lines come before the live file's.
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].mtime.Before(fresh[j].mtime) })
	d.unopened = false
	for _, c := range fresh {
		if ok := d.open(c); ok {
			progressed = true
			continue
		}
		_, seen := d.seen[c.ino]
		_, refused := d.refused[c.ino]
		if !seen && !refused && time.Since(c.mtime) < heldBackRelist {
			d.unopened = true // written to just now, and not yet a whole line (or no slot)
		}
	}
	maps.DeleteFunc(d.seen, func(ino uint64, _ stamp) bool { return !present[ino] })
	maps.DeleteFunc(d.keyOf, func(ino uint64, _ string) bool { return !present[ino] })
	maps.DeleteFunc(d.refused, func(ino uint64, _ string) bool { return !present[ino] })
	if time.Since(d.forgot) > forgetEvery {
		d.forget()
	}
	read, err := d.readAll(ctx)
	return progressed || read, err
}

// refuse records that the entry name (inode ino) is not read, counting it
// and saying so once.
func (d *Dir) refuse(name string, ino uint64, reason string, mode fs.FileMode) {
	d.refused[ino] = reason
	d.metrics.refused.WithLabelValues(d.cfg.Tenant, reason).Inc()
	msg := "not a regular file; not read"
	if reason == refusedHardlink {
		msg = "file has more than one link (it may be another tenant's or the host's); not read"
	}
	d.log.Warn(msg, zap.String("file", name), zap.String("reason", reason), zap.String("mode", mode.String()))
}

type candidate struct {
	name  string
	ino   uint64
	mtime time.Time
	gz    bool
}

type stamp struct {
	size  int64
	mtime time.Time
}

// markSeen remembers a finished or ignored file as it is now: by its open
// descriptor f, else by name in the directory.
func (d *Dir) markSeen(ino uint64, f *os.File, name string) {
	var st fileStat
	var err error
	switch {
	case f != nil:
		st, err = fstat(f)
	case d.dirfd >= 0:
		st, err = lstatAt(d.dirfd, name)
	default:
		return
	}
	if err == nil && st.ino == ino {
		d.seen[ino] = st.stamp()
	}
}

// open starts reading a file not seen before, or decides it needs no
// reading. It returns true when it opened a reader.
func (d *Dir) open(c candidate) bool {
	labels, ok := d.cfg.Labels(c.name)
	if !ok {
		d.markSeen(c.ino, nil, c.name)
		return false
	}
	if !d.cfg.Open.tryAcquire() {
		if !d.warned["open"] {
			d.warned["open"] = true
			d.log.Warn("open-file bound reached; waiting for a slot", zap.String("file", c.name))
		}
		return false
	}
	r, err := d.openReader(c)
	if err != nil || r == nil {
		d.cfg.Open.release()
		var re *refusedError
		switch {
		case errors.As(err, &re):
			// Swapped since the listing (a FIFO, a link): refused on the
			// descriptor. Without a stat (a symlink), the next listing sees it.
			if re.st.ino != 0 {
				d.refuse(c.name, re.st.ino, re.reason, re.st.mode)
			}
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			d.log.Warn("cannot read file", zap.String("file", c.name), zap.Error(err))
			d.markSeen(c.ino, nil, c.name)
		}
		return false
	}
	d.seq++
	r.seq = d.seq
	r.stream = pipeline.NewStream(pipeline.StreamConfig{
		Tenant:   d.cfg.Tenant,
		Labels:   labels,
		Collide:  time.Microsecond,
		Drops:    d.metrics.dropped,
		Repaired: d.metrics.repaired,
		OnAck:    d.acked(r),
		// Lines go to the sink a read at a time (lines flushes) as views of
		// the read buffer, which the sink copies from. (Multiline joining
		// makes lines of its own, and keeps a queue of entries the stream
		// refused: see r.joined.)
		BorrowedLines: d.cfg.Multiline == nil,
	}, d.pipeline(), d.out)
	if p, ok := d.store.Get(r.key); ok {
		r.stream.Restore(p.Last)
	}
	r.stream.ReplayTo(r.replayTo)
	if d.cfg.Multiline != nil {
		r.ml = d.cfg.Multiline()
	} else {
		r.borrow = true
	}
	d.readers[c.ino] = r
	d.metrics.opened.WithLabelValues(d.cfg.Tenant, r.kind).Inc()
	d.metrics.open.Inc()
	d.log.Debug("reading file", zap.String("file", c.name), zap.String("kind", r.kind), zap.Int64("offset", r.off))
	return true
}

func (d *Dir) pipeline() *pipeline.Pipeline {
	if d.cfg.Pipeline == nil {
		return nil
	}
	return d.cfg.Pipeline()
}

// openReader opens c (only a regular file with one link: see openAt) and
// positions it: where the stored position (or this process's own reading)
// left the file with the same fingerprint, or at the start of a file never
// seen. It returns nil, nil when the file cannot be identified yet (no
// whole line) or needs no reading.
func (d *Dir) openReader(c candidate) (*reader, error) {
	f, st, err := openAt(d.dirfd, c.name, filepath.Join(d.cfg.Dir, c.name))
	if err != nil {
		return nil, err
	}
	if st.ino != c.ino {
		f.Close()
		return nil, nil // replaced between the listing and the open: next cycle
	}
	r := &reader{name: c.name, ino: c.ino, f: f, gz: c.gz, kind: "plain"}
	var head []byte
	if c.gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			return nil, nil // still being written by the rotator: next cycle
		}
		// The head must be whole to compare with the fingerprint taken from
		// the plain file: a backup still being compressed yields fewer bytes
		// and would look like a new file. Short is fine only at the real end.
		head = make([]byte, FingerprintSize)
		n := 0
		for n < len(head) {
			m, err := zr.Read(head[n:])
			n += m
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				f.Close()
				return nil, nil // still being written (or corrupt): next cycle
			}
		}
		head = head[:n]
		r.src = io.MultiReader(bytes.NewReader(head), zr)
		r.kind = "gzip"
	} else {
		head = make([]byte, FingerprintSize)
		n, _ := f.ReadAt(head, 0)
		head = head[:n]
		r.src = f
	}
	if len(head) < FingerprintSize && bytes.IndexByte(head, '\n') < 0 {
		f.Close()
		return nil, nil // not one whole line yet: cannot be told apart
	}
	key, fp, start, found := d.lookup(head)
	if !found {
		fp = NewFingerprint(head)
		key = d.prefix + fp.String()
	}
	for _, o := range d.readers {
		if o.key == key {
			f.Close()
			return nil, nil // another name of a file being read (lumberjack's backup, its .gz): that reader finishes it
		}
	}
	r.key, r.fp = key, fp
	d.keyOf[c.ino] = key
	d.known[key] = fp
	if found && !c.gz && start > st.size {
		d.log.Info("file shorter than its stored position; reading it from the start", zap.String("file", c.name))
		start = 0
	}
	if start > 0 {
		if c.gz {
			n, err := io.CopyN(io.Discard, r.src, start)
			if err != nil || n < start {
				// Nothing past what was read: a backup of a finished file.
				d.markSeen(c.ino, f, "")
				f.Close()
				d.metrics.skipped.WithLabelValues(d.cfg.Tenant).Inc()
				return nil, nil
			}
		} else if _, err := f.Seek(start, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		r.kind += "-resumed"
	}
	r.off = start
	if d.store.Resumed() {
		// What the file held when opened, an earlier podtail may have read
		// and sent without its acknowledgement reaching the positions file
		// (a gzip backup: all of it, offsets being decompressed ones).
		r.replayTo = st.size
		if c.gz {
			r.replayTo = math.MaxInt64
		}
	}
	return r, nil
}

// lookup finds the key of the file that starts with head: among files this
// process read, then among stored positions. start is where reading resumes.
func (d *Dir) lookup(head []byte) (key string, fp Fingerprint, start int64, found bool) {
	for k, f := range d.known {
		if f.Matches(head) {
			key, fp, found = k, f, true
			break
		}
	}
	if !found {
		for _, k := range d.store.Keys(d.prefix) {
			p, _ := d.store.Get(k)
			f, err := ParseFingerprint(p.Fingerprint)
			if err == nil && f.Matches(head) {
				key, fp, found = k, f, true
				break
			}
		}
	}
	if !found {
		return "", Fingerprint{}, 0, false
	}
	if p, ok := d.store.Get(key); ok {
		start = p.Offset
	}
	return key, fp, max(start, d.readTo[key]), true
}

// acked returns the OnAck callback of reader r: it stores the position.
func (d *Dir) acked(r *reader) func(int64, map[string]int64) {
	path, key, ino, fp := filepath.Join(d.cfg.Dir, r.name), r.key, r.ino, r.fp.String()
	return func(pos int64, last map[string]int64) {
		d.store.Put(key, positions.Position{Path: path, Inode: ino, Offset: pos, Fingerprint: fp, Last: last})
	}
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
		release := d.slot
		d.slot = nil
		if release == nil {
			var ok bool
			if release, ok = d.cfg.Readers.tryAcquire(d.cfg.Tenant); !ok {
				// The tenant's other directories are reading: the step
				// queues for a slot (waitSlot); the next cycle goes on here.
				d.needSlot = true
				return ctx.Err() == nil, nil
			}
		}
		defer release()
	}
	// A bounded wait on the sink: while Loki pushes back, the loop must still
	// list the directory and open new files, or a fast rotator could rename,
	// compress and delete a file never opened. An open descriptor keeps a
	// file's data after it is deleted.
	wctx, stopWait := d.sinkWait(ctx)
	defer stopWait()
	for _, r := range rs {
		n, eof, err := r.read(wctx, d, time.Now().Add(readSlice))
		d.readTo[r.key] = r.off
		if errors.Is(err, errIncomplete) {
			d.close(r) // reopened next cycle, resuming at readTo
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
			return progressed, nil // pushed back: the next cycle sends it
		}
		d.atEOF(wctx, r)
	}
	return progressed, nil
}

// sinkWait returns the context readers wait on the sink with. It ends with
// ctx, when a name in the directory changes or Wake is called (see
// interrupt), or after heldBackRelist (readSlice when there is no inotify,
// or while a file just written is not open yet: see unopened), and the next
// cycle then lists the directory; stop releases it. It has no goroutine of
// its own: with hundreds of directories held back, one each was megabytes
// of stacks.
func (d *Dir) sinkWait(ctx context.Context) (wctx context.Context, stop func()) {
	wctx, cancel := context.WithCancel(ctx)
	every := heldBackRelist
	if !d.watched || d.unopened {
		every = readSlice
	}
	t := time.AfterFunc(every, func() { d.relist.Store(true); cancel() })
	d.stopWait.Store(&cancel)
	if d.relist.Load() {
		// A name changed since the listing began, between two waits (no wait
		// to end then): list again before waiting. (Missing this let a
		// file created and deleted within the held-back second go unread.)
		cancel()
	}
	return wctx, func() { d.stopWait.Store(nil); t.Stop(); cancel() }
}

// readMore reads on without listing the directory first (see listEvery).
func (d *Dir) readMore(ctx context.Context) (bool, error) {
	progressed, err := d.readAll(ctx)
	d.backlog = progressed && err == nil
	return progressed, err
}

// atEOF decides whether a file at its end is finished: a backup read
// through, a file renamed away (lumberjack: the writer has moved on) or
// deleted, or truncated in place (copytruncate). ctx is readAll's sink wait.
func (d *Dir) atEOF(ctx context.Context, r *reader) {
	if r.gz {
		d.finish(ctx, r, "gzip backup read")
		return
	}
	st, err := fstat(r.f)
	if err == nil && st.size < r.off {
		d.log.Info("file truncated in place (copytruncate); reading it anew", zap.String("file", r.name))
		d.metrics.rotations.WithLabelValues(d.cfg.Tenant, "truncate").Inc()
		d.close(r)
		return // not seen: the next cycle opens it as a new file
	}
	if d.dirfd < 0 {
		// The directory could not be opened this cycle: only a file with no
		// name left is known to be finished.
		if err != nil || st.nlink > 0 {
			return
		}
		err = fs.ErrNotExist
	} else {
		var cur fileStat
		cur, err = lstatAt(d.dirfd, r.name)
		if err == nil && cur.ino == r.ino {
			return // still the live file
		}
	}
	// Renamed or deleted: nothing more will be written to it. Read once more,
	// since a write may have landed between the last read and the rename.
	_, eof, rerr := r.read(ctx, d, time.Now().Add(readSlice))
	if rerr != nil || !eof {
		return // pushed back, or more to read: the next cycle comes back here
	}
	d.readTo[r.key] = r.off
	reason := "renamed"
	if err != nil {
		reason = "deleted"
	}
	if d.finish(ctx, r, "file "+reason) {
		d.metrics.rotations.WithLabelValues(d.cfg.Tenant, reason).Inc()
	}
}

// finish ships a last line without a newline, closes r, and remembers its
// inode as done. It returns false, leaving r open, while r still holds
// complete lines the sink has not taken.
func (d *Dir) finish(ctx context.Context, r *reader, why string) bool {
	if bytes.IndexByte(r.buf, '\n') >= 0 || r.stream.Flush(ctx) != nil {
		return false // the next cycle sends them, then finishes
	}
	if len(r.buf) == 0 && !r.gz && !r.skipping {
		// A plain reader gives its unshipped tail back at the end of each
		// read (release seeks back to it), so a last line without a newline
		// is read again here. (It was lost from b951766 on.)
		max, _ := r.stream.LineLimit()
		if r.readTail(max) {
			return false // whole lines arrived meanwhile: the next cycle sends them
		}
	}
	if len(r.buf) > 0 && !r.skipping {
		if err := r.send(ctx, time.Now(), string(r.buf), r.off+int64(len(r.buf))); err != nil {
			return false // not taken: the next cycle tries again
		}
		r.off += int64(len(r.buf))
		r.buf = r.buf[:0]
		d.readTo[r.key] = r.off
	}
	if r.stream.Flush(ctx) != nil {
		return false // taken, not handed over: the next cycle's read does
	}
	if err := r.flush(ctx, true); err != nil {
		// The last joined entry, completed now, was not taken: it is kept
		// in r.joined, and the next cycle sends it, then finishes. (Closing
		// here lost it.)
		return false
	}
	d.log.Debug("file finished", zap.String("file", r.name), zap.String("why", why), zap.Int64("offset", r.off))
	d.markSeen(r.ino, r.f, "")
	d.close(r)
	return true
}

func (d *Dir) close(r *reader) {
	r.release()
	r.f.Close()
	delete(d.readers, r.ino)
	d.cfg.Open.release()
	d.metrics.open.Dec()
}

func (d *Dir) closeAll() {
	for _, r := range d.readers {
		d.close(r)
	}
	d.closeDir()
}

// openDir returns the directory, opened one component at a time from /
// without following symlinks (see openDir), and listed from its start.
// While there is a backlog a cycle runs every readSlice, and opening the
// path again each time was a tenth of podtail's CPU with 500 directories
// (an openat and a close per component), so the descriptor is kept for
// reopenDirEvery. A descriptor is safe to keep: a component swapped for a
// symlink meanwhile does not change what it refers to. Opening again
// notices a directory removed and created anew.
func (d *Dir) openDir() (*os.File, error) {
	if d.df != nil && time.Since(d.dfAt) < reopenDirEvery {
		if _, err := d.df.Seek(0, io.SeekStart); err == nil {
			return d.df, nil
		}
	}
	d.closeDir()
	df, err := openDir(d.cfg.Dir)
	if err != nil {
		return nil, err
	}
	d.df, d.dfAt, d.dirfd = df, time.Now(), int(df.Fd())
	return df, nil
}

func (d *Dir) closeDir() {
	if d.df != nil {
		d.df.Close()
	}
	d.df, d.dirfd = nil, -1
}

// forget drops stored positions of this directory's files that are gone
// (no file left with their fingerprint, a .gz backup included) and have not
// moved for an hour, and the in-memory records of files gone.
func (d *Dir) forget() {
	d.forgot = time.Now()
	live := map[string]bool{}
	for _, k := range d.keyOf {
		live[k] = true
	}
	d.store.Forget(forgetAfter, func(key string) bool {
		return !strings.HasPrefix(key, d.prefix) || live[key]
	})
	for k := range d.known {
		if !live[k] {
			delete(d.known, k)
			delete(d.readTo, k)
		}
	}
}

// chunks holds read buffers not in use. A reader takes one only while it
// reads and gives it back at the end of its turn: with a thousand files
// open, a buffer each (64 KiB then) was most of podtail's heap, while only
// a few files are read at any moment.
var chunks = sync.Pool{New: func() any { b := make([]byte, 0, readChunk); return &b }}

// grab makes sure r.buf is a full-size read buffer, keeping what it holds.
func (r *reader) grab() {
	if cap(r.buf) >= readChunk {
		return
	}
	p := chunks.Get().(*[]byte)
	b := append((*p)[:0], r.buf...)
	*p = nil
	r.buf = b
}

// release gives r.buf back to the pool. What is left in it (lines the sink
// did not take, a partial line) a plain file reads again next time: its
// descriptor is set back to the first byte not shipped. Keeping those tails
// instead was 10 MB with a thousand files held back by Loki. A gzip stream
// cannot be rewound, so its tail moves to a buffer of its size. (A
// copytruncate while a file is held back now loses its unshipped tail, as
// it loses what was not read yet: see design.md.)
func (r *reader) release() {
	if cap(r.buf) < readChunk {
		return
	}
	if len(r.buf) > 0 && !r.gz {
		if _, err := r.f.Seek(r.off, io.SeekStart); err == nil {
			r.buf = r.buf[:0]
		}
	}
	b := r.buf
	r.buf = nil
	if len(b) > 0 {
		r.buf = append([]byte(nil), b...)
	}
	if cap(b) == readChunk {
		b = b[:0]
		chunks.Put(&b)
	}
}

// errSliceOver: a file's turn in the cycle is over (readSlice).
var errSliceOver = errors.New("read slice over")

// errIncomplete: a gzip backup ended early; the rotator is still writing it.
var errIncomplete = errors.New("gzip backup still being written")

// reader is one open file.
type reader struct {
	name     string
	ino      uint64
	key      string
	fp       Fingerprint
	kind     string // plain, gzip, plain-resumed, gzip-resumed
	f        *os.File
	src      io.Reader
	gz       bool
	off      int64 // offset of the first byte of buf in the (decompressed) file
	replayTo int64 // lines ending by here may have been sent by an earlier podtail (pipeline.Entry.Replay)
	buf      []byte
	skipping bool // dropping the rest of an over-long line
	seq      int
	stream   *pipeline.Stream
	borrow   bool // lines are sent as views of buf (StreamConfig.BorrowedLines)
	ml       *pipeline.Multiline
	joined   []pipeline.Joined // joined entries the sink has not taken yet
}

// readTail reads what the file holds past r.off into r.buf, up to max bytes
// and a little more (the Stream cuts a line at its limit), and reports
// whether it holds a whole line.
func (r *reader) readTail(max int) bool {
	if max < math.MaxInt {
		max++
	}
	buf := make([]byte, 0, 4<<10)
	for len(buf) < max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.src.Read(buf[len(buf):min(cap(buf), len(buf)+(max-len(buf)))])
		buf = buf[:len(buf)+n]
		if err != nil || n == 0 {
			break
		}
	}
	r.buf = buf
	return bytes.IndexByte(buf, '\n') >= 0
}

// send hands one line on, through the line joiner when there is one.
func (r *reader) send(ctx context.Context, t time.Time, line string, pos int64) error {
	if r.ml == nil {
		return r.stream.Send(ctx, t, line, pos)
	}
	if err := r.sendJoined(ctx); err != nil {
		return err
	}
	r.joined = append(r.joined, r.ml.Add(line, t, pos, time.Now())...)
	_ = r.sendJoined(ctx) // the line is taken; what the sink refused is sent later
	return nil
}

func (r *reader) sendJoined(ctx context.Context) error {
	for len(r.joined) > 0 {
		j := r.joined[0]
		if err := r.stream.Send(ctx, j.Time, j.Line, j.Pos); err != nil {
			return err
		}
		r.joined = r.joined[1:]
	}
	return nil
}

// flush sends a joined entry whose max_wait has passed (or any, if force).
func (r *reader) flush(ctx context.Context, force bool) error {
	if r.ml == nil {
		return nil
	}
	r.joined = append(r.joined, r.ml.Flush(time.Now(), force)...)
	if err := r.sendJoined(ctx); err != nil {
		return err
	}
	return r.stream.Flush(ctx)
}

// read ships the complete lines available, up to the budget, until the
// deadline (errSliceOver) or until ctx ends while the sink pushes back. eof
// is true when the file had nothing more.
func (r *reader) read(ctx context.Context, d *Dir, deadline time.Time) (n int, eof bool, err error) {
	// Entries taken and not handed over (the sink pushed back) go first.
	if err := r.stream.Flush(ctx); err != nil {
		return 0, false, err
	}
	r.grab()
	defer r.release()
	// Lines the sink did not take last time come first: the buffer then
	// never holds more than one partial line and a chunk, however long
	// Loki pushes back.
	if bytes.IndexByte(r.buf, '\n') >= 0 {
		if err := r.lines(ctx, d); err != nil {
			return 0, false, err
		}
	}
	for n < readBudget {
		if err := ctx.Err(); err != nil {
			return n, false, err
		}
		if time.Now().After(deadline) {
			return n, false, errSliceOver // let the loop rescan
		}
		if len(r.buf) == cap(r.buf) {
			r.buf = append(r.buf, make([]byte, readChunk)...)[:len(r.buf)]
		}
		m, rerr := r.src.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+m]
		n += m
		if m > 0 {
			d.metrics.bytes.WithLabelValues(d.cfg.Tenant).Add(float64(m))
			if err := r.lines(ctx, d); err != nil {
				return n, false, err
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return n, true, nil
			}
			if r.gz && errors.Is(rerr, io.ErrUnexpectedEOF) {
				return n, false, errIncomplete
			}
			return n, false, fmt.Errorf("read %s: %w", filepath.Join(d.cfg.Dir, r.name), rerr)
		}
		if m == 0 {
			return n, true, nil
		}
	}
	return n, false, nil
}

// lines ships every complete line in buf and keeps the rest. A line the
// sink did not take stays in buf, to be sent again.
func (r *reader) lines(ctx context.Context, d *Dir) error {
	start := 0
	defer func() {
		r.off += int64(start)
		r.buf = r.buf[:copy(r.buf, r.buf[start:])]
	}()
	// Lines are copied out a few KiB at a time, as one string, and shipped
	// as substrings of it: one allocation per textChunk instead of one per
	// line (neighbouring lines are queued and acknowledged together anyway),
	// while a line the queue holds keeps at most textChunk alive. Lines of
	// one read were read at the same moment, so they share one time.Now.
	var text string
	textAt := 0 // offset in buf of text[0]
	now := time.Now()
	counted := d.metrics.lines.WithLabelValues(d.cfg.Tenant)
	sent := 0
	defer func() { counted.Add(float64(sent)) }()
	for {
		i := bytes.IndexByte(r.buf[start:], '\n')
		if i < 0 {
			break
		}
		next := start + i + 1
		end := r.off + int64(next)
		if r.skipping {
			r.skipping = false
			if r.ml == nil || (r.ml.Pending() == 0 && len(r.joined) == 0) {
				r.stream.Skip(end) // else lines waiting to be joined would be passed over
			}
			start = next
			continue
		}
		var line string
		switch {
		case r.borrow:
			// Valid until the Flush at the end of this call (or Send's
			// own), while buf is untouched.
			line = unsafe.String(unsafe.SliceData(r.buf[start:]), i)
		default:
			if start+i >= textAt+len(text) {
				lim := min(len(r.buf), start+max(textChunk, i+1))
				j := bytes.LastIndexByte(r.buf[start:lim], '\n') // >= i
				text, textAt = string(r.buf[start:start+j+1]), start
			}
			line = text[start-textAt : start-textAt+i]
		}
		if err := r.send(ctx, now, line, end); err != nil {
			return err
		}
		sent++
		start = next
	}
	max, drop := r.stream.LineLimit()
	if len(r.buf)-start > max {
		// An over-long line: ship its head, which the stream truncates with
		// a marker (or drops), and skip to its end, never holding more of
		// it than the limit and a chunk.
		end := r.off + int64(len(r.buf))
		if !r.skipping {
			if err := r.send(ctx, time.Now(), string(r.buf[start:start+max+1]), end); err != nil {
				return err
			}
			if !drop {
				d.metrics.truncated.WithLabelValues(d.cfg.Tenant).Inc()
			}
			r.skipping = true
		}
		start = len(r.buf)
	}
	return r.stream.Flush(ctx)
}
