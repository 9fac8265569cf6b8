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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// MaxLineBytes caps what is buffered of input without a newline (not
// conmon's: conmon splits long lines into P parts); such a chunk is shipped
// as it is, bounded by the stream's line limit. A line joined from P parts
// is bounded by the stream's limit (limits.max_line_bytes) instead.
const MaxLineBytes = 1 << 20

const (
	readChunk = 64 << 10
	pollMin   = 10 * time.Millisecond
	pollMax   = 250 * time.Millisecond
)

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

	drainWake

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
		log:       outputLog(log, t),
		drainWake: newDrainWake(),
	}
	c.linesN, c.bytesN = m.lines.WithLabelValues(t.Tenant), m.bytes.WithLabelValues(t.Tenant)
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

// Run reads until ctx ends, or, once draining, until the end of the log.
func (c *ContainerOutput) Run(ctx context.Context) error {
	f, err := c.open(ctx)
	if f == nil {
		return err
	}
	c.file.Store(f)
	defer func() { c.file.Store(nil); f.Close() }()

	off, err := c.start(f)
	if err != nil {
		return err
	}
	var (
		buf     = make([]byte, 0, readChunk)
		partial = map[string]*partialLine{}
		wait    = pollMin
		idle    time.Time // when the reader last found nothing new
	)
	for {
		if ctx.Err() != nil {
			return nil
		}
		if len(buf) == cap(buf) {
			// A line longer than the buffer: grow, bounded by the CRI
			// writer's own line split (conmon writes ≤ 8 KiB per line).
			buf = append(buf, make([]byte, readChunk)...)[:len(buf)]
		}
		n, rerr := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			consumed, err := c.lines(ctx, buf, off, partial)
			if err == nil {
				// A stderr trace's entry is due although stdout goes on.
				err = c.flushJoined(ctx, off+int64(consumed), false)
			}
			if err == nil {
				// Before buf moves: the entries may be views of it. (An
				// entry a failed Flush keeps is copied out by the stream.)
				err = c.flush(ctx)
			}
			off += int64(consumed)
			c.readTo.Store(off)
			buf = buf[:copy(buf, buf[consumed:])]
			if err != nil {
				return err
			}
			wait, idle = pollMin, time.Time{}
			continue
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return fmt.Errorf("read %s: %w", c.target.LogPath, rerr)
		}
		// At the end of the file: was it truncated or replaced under us?
		if nf, noff, changed := c.checkRotated(f, off); changed {
			// What the old file's joiners hold is complete: deliver it
			// (the old stream's acknowledgements no longer count).
			if err := c.flushJoined(ctx, off, true); err != nil {
				return err
			}
			if err := c.flush(ctx); err != nil {
				return err
			}
			c.file.Store(nf)
			f.Close()
			f, off = nf, noff
			c.readTo.Store(off)
			buf, partial = buf[:0], map[string]*partialLine{}
			c.stream = c.newStream()
			c.skipTo, c.skipBy = 0, nil
			c.joins.reset()
			c.mu.Lock()
			c.chains = nil
			c.mu.Unlock()
			continue
		}
		if c.settled(&idle) {
			// The container is gone: a line it left unfinished is all
			// there will be of it, and so is an entry being joined.
			for _, name := range []string{Stdout, Stderr} {
				if p := partial[name]; p != nil && len(p.content) > 0 {
					_ = c.emit(ctx, p.time, name, string(p.content), true, p.start, off)
				}
			}
			_ = c.flushJoined(ctx, off, true)
			return c.flush(ctx)
		}
		// An entry whose max_wait passed while nothing was written.
		err := c.flushJoined(ctx, off, false)
		if err == nil {
			err = c.flush(ctx)
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		case <-c.clock.After(c.joins.wait(c.clock.Now(), wait)):
		}
		wait = min(wait*2, pollMax)
	}
}

// open waits for the log file to appear (conmon creates it when the
// container starts, which can be after the create event).
func (c *ContainerOutput) open(ctx context.Context) (*os.File, error) {
	if f := c.catch.Take(c.target.ID, c.target.LogPath); f != nil {
		return f, nil
	}
	wait := pollMin
	for {
		f, err := os.Open(c.target.LogPath)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open container log %s: %w", c.target.LogPath, err)
		}
		if c.draining.Load() {
			c.log.Info("container gone before its log could be opened (or it has no k8s-file log)", zap.String("path", c.target.LogPath))
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-c.wake:
		case <-time.After(wait):
		}
		wait = min(wait*2, pollMax)
	}
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
