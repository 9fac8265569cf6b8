// Package source reads log lines and hands them to the pipeline: the
// container output readers (container*.go from k8s-file logs, journald*.go
// from the journal), the scheduler that runs one reader per target, and the
// positions they resume from.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/file"
	"github.com/podtail/podtail/pkg/source/positions"
)

// errLogGone ends a reader whose container stopped before its log could be
// opened: the run was not read, so the scheduler starts a reader again if
// the log turns up elsewhere (the spool's link of a container removed
// meanwhile: the soak lost such a tail after a restart).
var errLogGone = errors.New("container log gone before it could be opened")

// MaxLineBytes caps what is buffered of input without a newline (not
// conmon's: conmon splits long lines into P parts); such a chunk is shipped
// as it is, bounded by the stream's line limit. A line joined from P parts
// is bounded by the stream's limit (limits.max_line_bytes) instead.
const MaxLineBytes = 1 << 20

const (
	readChunk = 64 << 10
	pollMin   = 10 * time.Millisecond
	pollMax   = 250 * time.Millisecond
	// watchedPoll is the longest a reader whose log's directory inotify
	// watches (or, for the journal, its watcher) waits without being
	// woken: a safety net (an overflow of inotify's queue wakes every
	// reader), so an idle container costs a look every few minutes rather
	// than four a second.
	watchedPoll = 5 * time.Minute
	// readSteps is how many reads a step makes before it lets the stepping
	// goroutine check for the context's end and start over.
	readSteps = 64
)

// readBufs holds the read buffers of readers that wait: a reader takes one
// only while there is something to read.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, readChunk); return &b }}

// ContainerOutput reads one container's stdout and stderr from its k8s-file
// log, which conmon writes with nanosecond times. Reading the file rather
// than following the logs API gives exact byte positions, the container's own
// times, no CPU in the Podman service, and it keeps working while the Podman
// service is down.
type ContainerOutput struct {
	target  discovery.Target
	key     string
	store   *positions.Store
	out     pipeline.Sink
	log     *zap.Logger
	metrics *Metrics
	// linesN and bytesN are metrics' counters of this target's tenant:
	// looked up per line, they were a tenth of the reader's time.
	linesN, bytesN prometheus.Counter
	fromEnd        bool

	parking
	watcher *file.Watcher // nil: the reader polls

	// What the stepping goroutine keeps between steps (park.go).
	f           *os.File
	off         int64  // the offset read up to
	buf         []byte // nil while waiting, unless a line is half read
	partial     map[string]*partialLine
	poll        time.Duration // the last wait
	idle        time.Time     // when the reader last found nothing new
	watched     bool
	watchFailed bool
	unwatch     func()

	pipes  Pipes
	stream *pipeline.Stream
	inode  atomic.Uint64
	file   atomic.Pointer[os.File] // the log being read, for SpoolCopy
	catch  *Catcher                // may hold the log, opened before the create event came
	// gen counts the log files read (a truncated or replaced log starts a
	// new one, with offsets from 0): acks of an older one are ignored.
	gen atomic.Int64
	// lastTime is the time of the last CRI line, given to a line that is
	// not CRI so it does not move later lines' times.
	lastTime time.Time
	// skipTo: complete lines ending at or before it were delivered before a
	// restart and are not sent again (see positions.Position.Delivered);
	// skipBy overrides it for a stream whose multi-line entry was not
	// (DeliveredStreams).
	skipTo int64
	skipBy map[string]int64
	// lastTok is the last position token sent (see token).
	lastTok int64
	// readTo and cur are the offset read up to and the current stream,
	// published for Status (the status page): once per read(2), and per
	// log file.
	readTo atomic.Int64
	cur    atomic.Pointer[pipeline.Stream]

	mu     sync.Mutex
	chains []chain // lines being joined from P parts, oldest first
	joins  *joins[int64]
}

// Key is the positions key of a container's output.
func Key(containerID string) string { return "container:" + containerID }

// NewContainerOutput returns a reader for t whose lines go through p (nil:
// none) to out. fromEnd starts at the end of the log when no position is
// stored.
func NewContainerOutput(t discovery.Target, store *positions.Store, pipes Pipes, out pipeline.Sink, fromEnd bool, m *Metrics, log *zap.Logger) *ContainerOutput {
	c := &ContainerOutput{
		target: t, key: Key(t.ID), store: store, fromEnd: fromEnd,
		metrics: m, pipes: pipes, out: out,
		log: outputLog(log, t),
	}
	c.linesN, c.bytesN = m.lines.WithLabelValues(t.Tenant), m.bytes.WithLabelValues(t.Tenant)
	c.parking.init()
	c.joins = newJoins[int64](pipes.Join, &c.mu)
	c.stream = c.newStream()
	return c
}

// newStream starts a pipeline stream for the current log file.
//
// The stream hands entries over a read at a time (Flush after lines), as
// views of the read buffer (the sink copies lines): one hand-over per line
// and a copy of each were a fifth of the reader's time.
func (c *ContainerOutput) newStream() *pipeline.Stream {
	gen := c.gen.Add(1)
	c.lastTok = 0
	s := pipeline.NewStream(pipeline.StreamConfig{
		Tenant: c.target.Tenant,
		Labels: c.target.StreamLabels(),
		// conmon's times never go backwards within a stream, so every
		// collision is resolved, however long the run of equal times.
		Collide:  time.Hour,
		Drops:    c.metrics.dropped,
		Repaired: c.metrics.repaired,
		OnAck: func(pos int64, last map[string]int64) {
			if c.gen.Load() == gen {
				c.acked(pos, last)
			}
		},
		BorrowedLines: true,
		ByStream:      c.pipes.ByStream,
		Metadata:      sourceMetadata(c.target),
	}, c.pipes.Default, c.out)
	c.cur.Store(s)
	return s
}

// Start reads until ctx ends or, once draining, until the end of the log,
// without a goroutine while it waits (park.go), then calls done with what
// ended it (nil, or a read error).
func (c *ContainerOutput) Start(ctx context.Context, done func(error)) {
	c.start(ctx, c.step, func(err error) {
		c.stopWatch()
		if c.f != nil {
			c.file.Store(nil)
			c.f.Close()
		}
		c.dropBuf()
		done(err)
	})
}

// Run is Start, waiting for the end.
func (c *ContainerOutput) Run(ctx context.Context) error { return runParked(ctx, c.Start) }

// step opens the log once it is there, reads it to its end, and says how
// long to wait before looking again.
func (c *ContainerOutput) step(ctx context.Context, now time.Time) next {
	if ctx.Err() != nil {
		return next{end: true}
	}
	if !c.watched {
		c.watch()
	}
	if c.f == nil {
		f, err := c.open()
		if err != nil || (f == nil && c.draining.Load()) {
			if err == nil {
				c.log.Info("container gone before its log could be opened (or it has no k8s-file log)", zap.String("path", c.target.LogPath))
				err = errLogGone
			}
			return next{end: true, err: err}
		}
		if f == nil {
			return next{after: c.backoff()}
		}
		c.f = f
		c.file.Store(f)
		if c.off, err = c.resumeAt(f); err != nil {
			return next{end: true, err: err}
		}
	}
	read, err := c.read(ctx)
	if err != nil || ctx.Err() != nil {
		return next{end: true, err: err}
	}
	if read {
		c.poll, c.idle = 0, time.Time{}
		return next{again: true}
	}
	defer c.dropBuf() // nothing to read: no buffer held while waiting
	// At the end of the file: was it truncated or replaced under us?
	if nf, noff, changed := c.checkRotated(c.f, c.off); changed {
		return c.rotated(ctx, nf, noff)
	}
	if c.settled(now, &c.idle, drainSettle) {
		// The container is gone: a line it left unfinished is all there
		// will be of it, and so is an entry being joined.
		for _, name := range []string{Stdout, Stderr} {
			if p := c.partial[name]; p != nil && len(p.content) > 0 {
				_ = c.emit(ctx, p.time, name, string(p.content), true, p.start, c.off)
			}
		}
		_ = c.flushJoined(ctx, c.off, true)
		return next{end: true, err: c.flush(ctx)}
	}
	// An entry whose max_wait passed while nothing was written.
	err = c.flushJoined(ctx, c.off, false)
	if err == nil {
		err = c.flush(ctx)
	}
	if err != nil {
		return next{end: true, err: err}
	}
	return next{after: c.joins.wait(now, c.wait(c.backoff()))}
}

// read reads what the log holds past c.off, up to readSteps reads, and
// ships its complete lines; it reports whether it read anything.
func (c *ContainerOutput) read(ctx context.Context) (bool, error) {
	if c.buf == nil {
		c.buf = (*readBufs.Get().(*[]byte))[:0]
	}
	if c.partial == nil {
		c.partial = map[string]*partialLine{}
	}
	read := false
	for range readSteps {
		if ctx.Err() != nil {
			return read, nil
		}
		if len(c.buf) == cap(c.buf) {
			// A line longer than the buffer: grow, bounded by the CRI
			// writer's own line split (conmon writes ≤ 8 KiB per line).
			c.buf = append(c.buf, make([]byte, readChunk)...)[:len(c.buf)]
		}
		n, rerr := c.f.Read(c.buf[len(c.buf):cap(c.buf)])
		if n == 0 {
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				return read, fmt.Errorf("read %s: %w", c.target.LogPath, rerr)
			}
			return read, nil
		}
		read = true
		c.buf = c.buf[:len(c.buf)+n]
		consumed, err := c.lines(ctx, c.buf, c.off, c.partial)
		if err == nil {
			// A stderr trace's entry is due although stdout goes on.
			err = c.flushJoined(ctx, c.off+int64(consumed), false)
		}
		if err == nil {
			// Before buf moves: the entries may be views of it. (An entry a
			// failed Flush keeps is copied out by the stream.)
			err = c.flush(ctx)
		}
		c.off += int64(consumed)
		c.readTo.Store(c.off)
		c.buf = c.buf[:copy(c.buf, c.buf[consumed:])]
		if err != nil {
			return read, err
		}
	}
	return read, nil
}

// rotated goes on with nf, the log that replaced (or truncated) the one
// read, from noff.
func (c *ContainerOutput) rotated(ctx context.Context, nf *os.File, noff int64) next {
	// What the old file's joiners hold is complete: deliver it (the old
	// stream's acknowledgements no longer count).
	err := c.flushJoined(ctx, c.off, true)
	if err == nil {
		err = c.flush(ctx)
	}
	if err != nil {
		nf.Close()
		return next{end: true, err: err}
	}
	c.file.Store(nf)
	c.f.Close()
	c.f, c.off = nf, noff
	c.readTo.Store(noff)
	c.partial = nil
	c.stream = c.newStream()
	c.skipTo, c.skipBy = 0, nil
	c.joins.reset()
	c.mu.Lock()
	c.chains = nil
	c.mu.Unlock()
	return next{again: true}
}

// backoff is the next wait of a reader that found nothing: from pollMin,
// doubling up to pollMax. While inotify says when the log's directory
// changes, one look pollMin after the last output (the writes meanwhile
// are left to it: Nudge) is all: then the reader waits to be woken, the
// poll only a safety net. Looking on at growing intervals was a dozen
// steps a minute for each idle container that prints a line a minute.
func (c *ContainerOutput) backoff() time.Duration {
	if c.watched && c.poll > 0 {
		return watchedPoll
	}
	c.poll = max(pollMin, min(c.poll*2, pollMax))
	return c.poll
}

// dropBuf gives the read buffer back, unless it holds a line not read to
// its end (conmon writes whole lines, so it rarely does).
func (c *ContainerOutput) dropBuf() {
	if c.buf == nil || len(c.buf) > 0 {
		return
	}
	if b := c.buf; cap(b) == readChunk {
		readBufs.Put(&b)
	}
	c.buf = nil
}

// watch asks inotify to wake the reader when the log's directory changes
// (the log is written, created or replaced); without it the reader polls.
func (c *ContainerOutput) watch() {
	if c.watcher == nil {
		return
	}
	stop, err := c.watcher.Watch(filepath.Dir(c.target.LogPath), func(bool) { c.Nudge() })
	if err != nil {
		if !c.watchFailed {
			c.watchFailed = true
			c.log.Debug("cannot watch the container log's directory (yet); polling", zap.Error(err))
		}
		return
	}
	c.watched, c.unwatch = true, stop
}

func (c *ContainerOutput) stopWatch() {
	if c.unwatch != nil {
		c.unwatch()
	}
}

// open opens the log file once conmon has created it (it does when the
// container starts, which can be after the create event); nil while it is
// not there.
func (c *ContainerOutput) open() (*os.File, error) {
	if f := c.catch.Take(c.target.ID, c.target.LogPath); f != nil {
		return f, nil
	}
	f, err := os.Open(c.target.LogPath)
	if err == nil {
		return f, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return nil, fmt.Errorf("open container log %s: %w", c.target.LogPath, err)
}

// checkRotated notices a log truncated in place (Podman's max-size) or
// replaced, and returns the file and offset to go on with.
func (c *ContainerOutput) checkRotated(f *os.File, off int64) (*os.File, int64, bool) {
	st, err := os.Stat(c.target.LogPath)
	if err != nil {
		return nil, 0, false // removed: keep reading what the open descriptor has
	}
	if ino := inodeOf(st); ino != c.inode.Load() {
		nf, err := os.Open(c.target.LogPath)
		if err != nil {
			return nil, 0, false
		}
		c.inode.Store(ino)
		c.log.Info("container log replaced; following the new file")
		return nf, 0, true
	}
	if st.Size() < off {
		c.log.Warn("container log truncated in place (log max-size); lines written between the last read and the truncation are lost",
			zap.Int64("offset", off), zap.Int64("size", st.Size()))
		nf, err := os.Open(c.target.LogPath)
		if err != nil {
			return nil, 0, false
		}
		return nf, 0, true
	}
	return nil, 0, false
}
