package source

import (
	"bytes"
	"context"
	"strings"
	"time"
	"unsafe"

	"github.com/podtail/podtail/pkg/labels"
)

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
				if err := c.emit(ctx, c.lastTimeOr(), Stdout, string(buf[consumed:]), true, off+int64(consumed), end); err != nil {
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
				c.stream.Skip(c.token(end))
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
		lineStart, owned := start, len(l.Content) == 0
		if p != nil {
			lineStart, owned = p.start, true
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
		if !c.delivered(l.Stream, end) {
			if err := c.emit(ctx, l.Time, l.Stream, line, owned, lineStart, end); err != nil {
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
	return handOver(ctx, c.target, c.stream.Flush(ctx))
}

// delivered says whether a line of stream ending at end was delivered
// before a restart.
func (c *ContainerOutput) delivered(stream string, end int64) bool {
	to, ok := c.skipBy[stream]
	if !ok {
		to = c.skipTo
	}
	return end <= to
}

// emit hands on one line of stream, which starts at start and ends at end,
// through the stream's joiner when it has one. owned: line is not a view of
// the read buffer (a joiner keeps it).
func (c *ContainerOutput) emit(ctx context.Context, t time.Time, stream, line string, owned bool, start, end int64) error {
	if !c.joins.has(stream) {
		return c.send(ctx, t, stream, line, end, nil)
	}
	if !owned {
		line = strings.Clone(line)
	}
	c.linesN.Inc()
	return c.sendJoined(ctx, c.joins.add(stream, line, t, start, c.clock.Now()), end)
}

// flushJoined sends the joined entries whose max_wait has passed (or all,
// if force); r is the offset read up to.
func (c *ContainerOutput) flushJoined(ctx context.Context, r int64, force bool) error {
	if len(c.joins.streams) == 0 {
		return nil // no clock read per read(2) without joiners
	}
	return c.sendJoined(ctx, c.joins.flush(c.clock.Now(), force), r)
}

func (c *ContainerOutput) sendJoined(ctx context.Context, out []joinedOut[int64], r int64) error {
	for _, j := range out {
		if err := c.send(ctx, j.Time, j.stream, j.Line, r, j.e); err != nil {
			return err
		}
	}
	return nil
}

// posShift: a position token is the offset read up to when the entry was
// sent, shifted by posShift, plus how many entries were sent there before.
// Offsets stay below 2^47 (128 TiB), and a handful of entries are sent at
// one offset at most (a line, or the entries joiners complete with it).
const posShift = 16

// token is the position an entry is sent with when everything up to offset
// r was read. A joined entry is sent after lines that follow its own, so
// offsets would not grow in the order entries are sent, and Ack(pos) means
// "everything sent up to pos": tokens grow strictly in that order, and
// every line ending by r (the token shifted back) is sent before it or is
// held (a chain, a joined entry) until acknowledged on its own.
func (c *ContainerOutput) token(r int64) int64 {
	t := r << posShift
	if t <= c.lastTok {
		t = c.lastTok + 1
	}
	c.lastTok = t
	return t
}

// send hands one line, or a joined entry e, on; r is the offset read up to.
func (c *ContainerOutput) send(ctx context.Context, t time.Time, stream, line string, r int64, e *joinEntry[int64]) error {
	tok := c.token(r)
	if e != nil {
		c.joins.sending(e, tok)
	}
	if err := c.stream.Send(ctx, t, line, tok, labels.Stream, stream); err != nil {
		return handOver(ctx, c.target, err)
	}
	if e == nil {
		c.linesN.Inc() // a joined entry's lines were counted as they came
	}
	return nil
}

func (c *ContainerOutput) lastTimeOr() time.Time {
	if c.lastTime.IsZero() {
		return time.Now()
	}
	return c.lastTime
}
