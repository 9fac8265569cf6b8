package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podtail/podtail/pkg/pipeline"
)

// Reading one open file (design.md, step 4): chunks into a pooled buffer,
// complete lines cut from it and sent through the file's Stream (or its
// multiline joiner), an over-long line cut at the limit and passed over.

const (
	// readChunk is one read(2): ~70 lines of zap JSON. A directory's
	// goroutine holds one while the sink pushes back, and podtail may have
	// hundreds of directories: 64 KiB each was tens of MB.
	readChunk = 16 << 10
	textChunk = 4 << 10 // see reader.lines
)

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

// reader is one open file. It is the stepping goroutine's, like the Dir
// that opened it; its stream's acknowledgements come from the sink's.
type reader struct {
	name     string
	path     string
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
	now      func() time.Time  // the Dir's clock
	labels   map[string]string // the file's Loki labels, for Dir.Files
	// readTo is off, published for Dir.Files (the status page) once per
	// chunk read: the only field another goroutine reads while r is open.
	readTo atomic.Int64

	bytesN, linesN, truncN prometheus.Counter // the tenant's
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
	r.joined = append(r.joined, r.ml.Add(line, t, pos, r.now())...)
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
	r.joined = append(r.joined, r.ml.Flush(r.now(), force)...)
	if err := r.sendJoined(ctx); err != nil {
		return err
	}
	return r.stream.Flush(ctx)
}

// read ships the complete lines available, up to the budget, until the
// deadline (errSliceOver) or until ctx ends while the sink pushes back. eof
// is true when the file had nothing more.
func (r *reader) read(ctx context.Context, deadline time.Time) (n int, eof bool, err error) {
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
		if err := r.lines(ctx); err != nil {
			return 0, false, err
		}
	}
	for n < readBudget {
		if err := ctx.Err(); err != nil {
			return n, false, err
		}
		if r.now().After(deadline) {
			return n, false, errSliceOver // let the loop rescan
		}
		if len(r.buf) == cap(r.buf) {
			r.buf = append(r.buf, make([]byte, readChunk)...)[:len(r.buf)]
		}
		m, rerr := r.src.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+m]
		n += m
		if m > 0 {
			r.bytesN.Add(float64(m))
			if err := r.lines(ctx); err != nil {
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
			return n, false, fmt.Errorf("read %s: %w", r.path, rerr)
		}
		if m == 0 {
			return n, true, nil
		}
	}
	return n, false, nil
}

// lines ships every complete line in buf and keeps the rest. A line the
// sink did not take stays in buf, to be sent again.
func (r *reader) lines(ctx context.Context) error {
	start := 0
	defer func() {
		r.off += int64(start)
		r.readTo.Store(r.off)
		r.buf = r.buf[:copy(r.buf, r.buf[start:])]
	}()
	// Lines are copied out a few KiB at a time, as one string, and shipped
	// as substrings of it: one allocation per textChunk instead of one per
	// line (neighbouring lines are queued and acknowledged together anyway),
	// while a line the queue holds keeps at most textChunk alive. Lines of
	// one read were read at the same moment, so they share one time.Now.
	var text string
	textAt := 0 // offset in buf of text[0]
	now := r.now()
	sent := 0
	defer func() { r.linesN.Add(float64(sent)) }()
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
			if err := r.send(ctx, now, string(r.buf[start:start+max+1]), end); err != nil {
				return err
			}
			if !drop {
				r.truncN.Inc()
			}
			r.skipping = true
		}
		start = len(r.buf)
	}
	return r.stream.Flush(ctx)
}
