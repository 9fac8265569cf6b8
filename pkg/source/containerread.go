package source

import (
	"bytes"
	"context"
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
	return handOver(ctx, c.target, c.stream.Flush(ctx))
}

// send hands one line on.
func (c *ContainerOutput) send(ctx context.Context, t time.Time, stream, line string, end int64) error {
	if err := c.stream.Send(ctx, t, line, end, labels.Stream, stream); err != nil {
		return handOver(ctx, c.target, err)
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
