// Package source reads log lines and hands them to the pipeline: the
// container output reader (this file), the scheduler that runs one reader per
// target, and the positions they resume from.
package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// MaxLineBytes caps what is buffered of input without a newline (not
// conmon's: conmon splits long lines into P parts); such a chunk is shipped
// as it is, bounded by the stream's line limit. A line joined from P parts
// is bounded by the stream's limit (limits.max_line_bytes) instead.
const MaxLineBytes = 1 << 20

const (
	readChunk   = 64 << 10
	pollMin     = 10 * time.Millisecond
	pollMax     = 250 * time.Millisecond
	drainSettle = 300 * time.Millisecond
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

	draining atomic.Bool
	wake     chan struct{}

	pipe   *pipeline.Pipeline
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
	// restart and are not sent again (see positions.Position.Delivered).
	skipTo int64

	mu     sync.Mutex
	chains []chain // lines being joined from P parts, oldest first
}

// chain is a line split by conmon: where its first part starts, and where
// its last part ends (-1 while unfinished).
type chain struct{ start, end int64 }

// Key is the positions key of a container's output.
func Key(containerID string) string { return "container:" + containerID }

// NewContainerOutput returns a reader for t whose lines go through p (nil:
// none) to out. fromEnd starts at the end of the log when no position is
// stored.
func NewContainerOutput(t discovery.Target, store *positions.Store, p *pipeline.Pipeline, out pipeline.Sink, fromEnd bool, m *Metrics, log *zap.Logger) *ContainerOutput {
	c := &ContainerOutput{
		target: t, key: Key(t.ID), store: store, fromEnd: fromEnd,
		metrics: m, pipe: p, out: out,
		log:  log.WithLazy(zap.String("container", t.Name), zap.String("id", t.ID[:min(12, len(t.ID))]), zap.String("tenant", t.Tenant)),
		wake: make(chan struct{}, 1),
	}
	c.linesN, c.bytesN = m.lines.WithLabelValues(t.Tenant), m.bytes.WithLabelValues(t.Tenant)
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
	}, c.pipe, c.out)
	return s
}

// SetDraining tells the reader whether the container has stopped: a
// draining reader reads to the end of the log and returns.
func (c *ContainerOutput) SetDraining(d bool) {
	if c.draining.Swap(d) != d {
		c.Wake()
	}
}

// Wake makes the reader look at its log now rather than at its next poll.
func (c *ContainerOutput) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// acked stores the position up to which everything was delivered. Reading
// must resume at the start of a joined line not yet delivered in full, so
// the offset stays there and Delivered records the rest.
func (c *ContainerOutput) acked(pos int64, last map[string]int64) {
	c.mu.Lock()
	resume := pos
	kept := c.chains[:0]
	for _, ch := range c.chains {
		if ch.end >= 0 && ch.end <= pos {
			continue // delivered whole
		}
		kept = append(kept, ch)
		if ch.start < pos {
			resume = min(resume, ch.start)
		}
	}
	c.chains = kept
	// Still under c.mu: SpoolCopy moves the position to another inode, and
	// a Put of the old one must not come after it.
	defer c.mu.Unlock()
	p := positions.Position{Path: c.target.LogPath, Inode: c.inode.Load(), Offset: resume, Last: last}
	if resume < pos {
		p.Delivered = pos
	}
	c.store.Put(c.key, p)
}

// SpoolCopy copies the part of the log not yet acknowledged to dst, at the
// same offsets (the part before is a hole in a sparse file), and moves the
// stored position to the copy, so that a restart reads on from dst. It is
// for a container that is gone, whose log Podman deleted while this reader
// still holds it open; the reader itself carries on from its descriptor.
func (c *ContainerOutput) SpoolCopy(dst string) error {
	f := c.file.Load()
	if f == nil {
		return errors.New("spool: the log is not open")
	}
	// A descriptor of our own on the (deleted) log, since Run may close f at
	// any moment. Control holds a reference on f's descriptor while it runs,
	// so Close can neither free nor recycle the number under us (f.Fd()
	// could: the race detector caught it); a closed f is an error.
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("spool: %s: %w", c.target.LogPath, err)
	}
	var src *os.File
	if cerr := rc.Control(func(fd uintptr) { src, err = os.Open(fmt.Sprintf("/proc/self/fd/%d", fd)) }); cerr != nil {
		return fmt.Errorf("spool: %s is no longer open: %w", c.target.LogPath, cerr)
	}
	if err != nil {
		return fmt.Errorf("spool: reopen %s: %w", c.target.LogPath, err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil || inodeOf(st) != c.inode.Load() {
		return fmt.Errorf("spool: %s is no longer open", c.target.LogPath)
	}
	var from int64
	if p, ok := c.store.Get(c.key); ok && p.Inode == inodeOf(st) {
		from = p.Offset
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer os.Remove(tmp)
	_, err = out.Seek(from, io.SeekStart)
	if err == nil {
		_, err = io.Copy(out, io.NewSectionReader(src, from, st.Size()-from))
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return fmt.Errorf("spool: copy %s to %s: %w", c.target.LogPath, dst, err)
	}
	cst, err := os.Stat(dst)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inode.Store(inodeOf(cst))
	p, _ := c.store.Get(c.key)
	p.Path, p.Inode = dst, inodeOf(cst)
	c.store.Put(c.key, p)
	c.log.Info("container removed before its output was delivered; kept in the spool",
		zap.String("spool", dst), zap.Int64("from", from), zap.Int64("bytes", st.Size()-from))
	return nil
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
				// Before buf moves: the entries may be views of it. (An
				// entry a failed Flush keeps is copied out by the stream.)
				err = c.flush(ctx)
			}
			off += int64(consumed)
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
			c.file.Store(nf)
			f.Close()
			f, off = nf, noff
			buf, partial = buf[:0], map[string]*partialLine{}
			c.stream = c.newStream()
			c.skipTo = 0
			c.mu.Lock()
			c.chains = nil
			c.mu.Unlock()
			continue
		}
		if idle.IsZero() {
			idle = time.Now()
		}
		if c.draining.Load() && time.Since(idle) >= drainSettle {
			// The container is gone: a line it left unfinished is all
			// there will be of it.
			for _, name := range []string{Stdout, Stderr} {
				if p := partial[name]; p != nil && len(p.content) > 0 {
					_ = c.stream.Send(ctx, p.time, string(p.content), off, labels.Stream, name)
				}
			}
			return c.flush(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		case <-time.After(wait):
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

// start seeks to where reading resumes and returns that offset.
func (c *ContainerOutput) start(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", c.target.LogPath, err)
	}
	inode := inodeOf(st)
	c.inode.Store(inode)

	var off int64
	if p, ok := c.store.Get(c.key); ok {
		switch {
		case p.Inode != 0 && p.Inode != inode:
			c.log.Info("container log replaced since the stored position; reading it from the start")
		case p.Offset > st.Size():
			c.log.Info("container log truncated since the stored position; reading it from the start",
				zap.Int64("stored", p.Offset), zap.Int64("size", st.Size()))
		default:
			off = p.Offset
			c.skipTo = p.Delivered
			c.stream.Restore(p.Last)
		}
	} else if c.fromEnd {
		off = st.Size()
		c.store.Put(c.key, positions.Position{Path: c.target.LogPath, Inode: inode, Offset: off})
	}
	if c.store.Resumed() {
		// An earlier podtail may have read and sent what the log held, past
		// the acknowledged offset, without the acknowledgement reaching the
		// positions file: the sink checks such lines with Loki.
		c.stream.ReplayTo(st.Size())
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seek %s to %d: %w", c.target.LogPath, off, err)
	}
	c.log.Debug("reading container output", zap.String("path", c.target.LogPath), zap.Int64("offset", off))
	return off, nil
}

// partialLine is a line conmon split into P parts, being joined.
type partialLine struct {
	start   int64 // file offset of its first part
	time    time.Time
	content []byte
	// skipping: the line went over the line limit and was shipped
	// truncated (or dropped); its remaining parts are passed over.
	skipping bool
}

// lines ships every complete line in buf, which starts at file offset off,
// and returns how many bytes it consumed.
func (c *ContainerOutput) lines(ctx context.Context, buf []byte, off int64, partial map[string]*partialLine) (int, error) {
	consumed := 0
	for {
		if ctx.Err() != nil {
			return consumed, nil // stopping: what is not sent is read again after a restart
		}
		nl := bytes.IndexByte(buf[consumed:], '\n')
		if nl < 0 {
			if len(buf)-consumed >= MaxLineBytes {
				// Not conmon's output (conmon splits long lines): ship the
				// chunk as is rather than buffer without bound.
				end := off + int64(len(buf))
				if err := c.send(ctx, c.lastTimeOr(), Stdout, string(buf[consumed:]), end); err != nil {
					return consumed, err
				}
				c.metrics.malformed.WithLabelValues(c.target.Tenant).Inc()
				consumed = len(buf)
			}
			return consumed, nil
		}
		raw := buf[consumed : consumed+nl]
		start := off + int64(consumed)
		end := start + int64(nl+1)

		l, err := ParseCRI(raw)
		if err != nil {
			// Not written by conmon: ship it as is rather than lose it.
			c.metrics.malformed.WithLabelValues(c.target.Tenant).Inc()
			l = CRILine{Time: c.lastTimeOr(), Stream: Stdout, Content: raw}
		} else {
			c.lastTime = l.Time
		}
		p := partial[l.Stream]
		if p != nil && p.skipping {
			consumed += nl + 1
			c.bytesN.Add(float64(nl + 1))
			if !l.Partial {
				delete(partial, l.Stream)
				c.stream.Skip(end)
			}
			continue
		}
		joined := 0
		if p != nil {
			joined = len(p.content)
		}
		if max, _ := c.stream.LineLimit(); l.Partial && joined+len(l.Content) <= max {
			if p == nil {
				p = &partialLine{start: start, time: l.Time}
				partial[l.Stream] = p
				c.mu.Lock()
				c.chains = append(c.chains, chain{start: start, end: -1})
				c.mu.Unlock()
			}
			p.content = append(p.content, l.Content...)
			consumed += nl + 1
			continue
		}
		var line string
		switch {
		case len(l.Content) > 0:
			line = unsafe.String(&l.Content[0], len(l.Content)) // until c.flush
		default:
			line = string(l.Content)
		}
		if p != nil {
			line = string(p.content) + line
			delete(partial, l.Stream)
			c.mu.Lock()
			for i := range c.chains {
				if c.chains[i].start == p.start {
					c.chains[i].end = end
				}
			}
			c.mu.Unlock()
		}
		if end > c.skipTo {
			if err := c.send(ctx, l.Time, l.Stream, line, end); err != nil {
				return consumed, err
			}
		}
		if l.Partial {
			// Over the line limit with parts still to come: the stream
			// truncated (or dropped) what it got; the rest is passed over.
			partial[l.Stream] = &partialLine{start: end, skipping: true}
		}
		consumed += nl + 1
		c.bytesN.Add(float64(nl + 1))
	}
}

// flush hands what the stream holds to the sink. Once ctx has ended what
// was not taken is read again after a restart.
func (c *ContainerOutput) flush(ctx context.Context) error {
	return c.handOver(ctx, c.stream.Flush(ctx))
}

// handOver is the outcome of handing entries to the stream: nil once ctx
// has ended (what was not handed over is read again after a restart).
func (c *ContainerOutput) handOver(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("container %s: %w", c.target.Name, err)
}

// send hands one line on.
func (c *ContainerOutput) send(ctx context.Context, t time.Time, stream, line string, end int64) error {
	if err := c.stream.Send(ctx, t, line, end, labels.Stream, stream); err != nil {
		return c.handOver(ctx, err)
	}
	c.linesN.Inc()
	return nil
}

func (c *ContainerOutput) lastTimeOr() time.Time {
	if c.lastTime.IsZero() {
		return time.Now()
	}
	return c.lastTime
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

func inodeOf(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}
