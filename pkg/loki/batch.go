package loki

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/podtail/podtail/pkg/pipeline"
)

// batch is one push request in the making: a tenant's entries grouped into
// streams by label set, plus what is needed to acknowledge them afterwards.
type batch struct {
	created time.Time      // when the first entry arrived; BatchWait counts from here
	streams []push.Stream  // in order of first appearance
	index   map[string]int // Labels -> position in streams
	last    int            // position of the stream of the last entry added
	acks    []ack          // in consumption order; entries without an Acker are left out
	entries int
	bytes   int64 // sum of Entry.Size(): what BatchSize limits
	charge  int64 // what the queue bound was charged: see queueCharge
	// replay: per stream (position in streams), the times of its entries
	// marked Replay, which skipStored checks with Loki; nil: none.
	replay map[int]replaySpan
	// skipped entries (and their bytes) Loki held already: not sent, still
	// acknowledged.
	skipped      int
	skippedBytes int64
}

// entryOverhead is what an entry costs in memory besides its line and
// metadata, charged to the queue bound so that the bound holds for memory
// and not only for payload: a queue of 10-byte lines would otherwise take
// ten times its bound. Measured: 226 bytes of heap per queued entry of a
// 10-byte line in this package (push.Entry, the ack record, slice growth),
// plus the source's in-flight record (pipeline.Stream, ~48 bytes).
const entryOverhead = 256

// queueCharge is what e counts against the queue bound.
func queueCharge(e *pipeline.Entry) int64 { return int64(e.Size()) + entryOverhead }

type ack struct {
	to  pipeline.Acker
	pos int64
}

func newBatch(now time.Time) *batch {
	return &batch{created: now, index: make(map[string]int)}
}

func (b *batch) add(e *pipeline.Entry) {
	// A source's entries come in runs of one stream: the last stream is
	// checked first (the same string, so compared by pointer) before
	// hashing a hundred bytes of labels per entry.
	i := b.last
	if i >= len(b.streams) || b.streams[i].Labels != e.Labels {
		var ok bool
		i, ok = b.index[e.Labels]
		if !ok {
			i = len(b.streams)
			b.index[e.Labels] = i
			b.streams = append(b.streams, push.Stream{Labels: e.Labels})
		}
		b.last = i
	}
	if e.Replay {
		ns := e.Time.UnixNano()
		if b.replay == nil {
			b.replay = map[int]replaySpan{}
		}
		sp, ok := b.replay[i]
		if !ok {
			sp = replaySpan{from: ns, to: ns}
		}
		sp.from, sp.to, sp.n = min(sp.from, ns), max(sp.to, ns), sp.n+1
		b.replay[i] = sp
	}
	b.streams[i].Entries = append(b.streams[i].Entries, push.Entry{
		Timestamp:          e.Time,
		Line:               e.Line,
		StructuredMetadata: e.Metadata,
	})
	if e.Ack != nil {
		// Ack means "everything up to pos", so a run of one source's entries
		// needs only its last ack: one call (and one stored position) per run
		// instead of one per line.
		if n := len(b.acks); n > 0 && b.acks[n-1].to == e.Ack && b.acks[n-1].pos <= e.Pos && cumulative(e.Ack) {
			b.acks[n-1].pos = e.Pos
		} else {
			b.acks = append(b.acks, ack{e.Ack, e.Pos})
		}
	}
	b.entries++
	b.bytes += int64(e.Size())
	b.charge += queueCharge(e)
}

// cumulative reports whether a says acknowledging pos covers everything
// before it (pipeline.CumulativeAcker).
func cumulative(a pipeline.Acker) bool {
	c, ok := a.(pipeline.CumulativeAcker)
	return ok && c.AcksCumulative()
}

// encode renders the batch as Loki's default push body: snappy block format
// around the protobuf PushRequest.
func (b *batch) encode() ([]byte, error) {
	raw, err := marshalPush(b.streams)
	defer putBuf(raw)
	if err != nil {
		return nil, fmt.Errorf("marshal push request: %w", err)
	}
	scratch := getBuf(snappy.MaxEncodedLen(len(raw)))
	defer putBuf(scratch)
	// The body is held until Loki answers, by every tenant pushing: a copy
	// of its size (about a third of the scratch buffer's) keeps that low.
	return append([]byte(nil), snappy.Encode(scratch, raw)...), nil
}

// marshalPush renders streams as a push.PushRequest, the same bytes as its
// generated Marshal, into a pooled buffer (give it back with putBuf). The
// generated code converts every entry's time to a message and sizes each
// stream three times over; this walk sizes each once, and it was an eighth
// of podtail's CPU.
func marshalPush(streams []push.Stream) ([]byte, error) {
	sizes := make([]int, len(streams))
	total := 0
	for i := range streams {
		s := &streams[i]
		n := 0
		if len(s.Labels) > 0 {
			n += 1 + uvarintLen(uint64(len(s.Labels))) + len(s.Labels)
		}
		for j := range s.Entries {
			e := &s.Entries[j]
			if len(e.Parsed) > 0 {
				// Never set by podtail; the generated code knows them.
				req := push.PushRequest{Streams: streams}
				return req.Marshal()
			}
			es, err := entrySize(e)
			if err != nil {
				return nil, err
			}
			n += 1 + uvarintLen(uint64(es)) + es
		}
		if s.Hash != 0 {
			n += 1 + uvarintLen(s.Hash)
		}
		sizes[i] = n
		total += 1 + uvarintLen(uint64(n)) + n
	}
	out := getBuf(total)[:0]
	for i := range streams {
		s := &streams[i]
		out = append(out, 0xa)
		out = binary.AppendUvarint(out, uint64(sizes[i]))
		if len(s.Labels) > 0 {
			out = appendString(out, 0xa, s.Labels)
		}
		for j := range s.Entries {
			e := &s.Entries[j]
			es, _ := entrySize(e)
			out = append(out, 0x12)
			out = binary.AppendUvarint(out, uint64(es))
			sec, nsec := e.Timestamp.Unix(), int64(e.Timestamp.Nanosecond())
			out = append(out, 0xa)
			out = binary.AppendUvarint(out, uint64(timestampSize(sec, nsec)))
			if sec != 0 {
				out = append(out, 0x8)
				out = binary.AppendUvarint(out, uint64(sec))
			}
			if nsec != 0 {
				out = append(out, 0x10)
				out = binary.AppendUvarint(out, uint64(nsec))
			}
			if len(e.Line) > 0 {
				out = appendString(out, 0x12, e.Line)
			}
			for _, m := range e.StructuredMetadata {
				out = append(out, 0x1a)
				out = binary.AppendUvarint(out, uint64(labelSize(m.Name, m.Value)))
				if len(m.Name) > 0 {
					out = appendString(out, 0xa, m.Name)
				}
				if len(m.Value) > 0 {
					out = appendString(out, 0x12, m.Value)
				}
			}
		}
		if s.Hash != 0 {
			out = append(out, 0x18)
			out = binary.AppendUvarint(out, s.Hash)
		}
	}
	if len(out) != total {
		return out, fmt.Errorf("wrote %d bytes of %d", len(out), total)
	}
	return out, nil
}

// The range of google.protobuf.Timestamp (years 1 to 9999), which the
// generated code refuses to marshal outside of.
const (
	minTimestampSec = -62135596800
	maxTimestampSec = 253402300800 // exclusive
)

func entrySize(e *push.Entry) (int, error) {
	sec := e.Timestamp.Unix()
	if sec < minTimestampSec || sec >= maxTimestampSec {
		return 0, fmt.Errorf("timestamp %v out of range", e.Timestamp)
	}
	ts := timestampSize(sec, int64(e.Timestamp.Nanosecond()))
	n := 1 + uvarintLen(uint64(ts)) + ts
	if len(e.Line) > 0 {
		n += 1 + uvarintLen(uint64(len(e.Line))) + len(e.Line)
	}
	for _, m := range e.StructuredMetadata {
		ls := labelSize(m.Name, m.Value)
		n += 1 + uvarintLen(uint64(ls)) + ls
	}
	return n, nil
}

func timestampSize(sec, nsec int64) int {
	n := 0
	if sec != 0 {
		n += 1 + uvarintLen(uint64(sec))
	}
	if nsec != 0 {
		n += 1 + uvarintLen(uint64(nsec))
	}
	return n
}

func labelSize(name, value string) int {
	n := 0
	if len(name) > 0 {
		n += 1 + uvarintLen(uint64(len(name))) + len(name)
	}
	if len(value) > 0 {
		n += 1 + uvarintLen(uint64(len(value))) + len(value)
	}
	return n
}

func appendString(out []byte, tag byte, s string) []byte {
	out = append(out, tag)
	out = binary.AppendUvarint(out, uint64(len(s)))
	return append(out, s...)
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// bufs holds marshal and compression buffers between encodes: a megabyte
// batch needs about 1.3 MB of each, and allocating them per push was a
// fifth of podtail's allocation.
var bufs sync.Pool

// getBuf returns a buffer of length n, from the pool when one is large
// enough.
func getBuf(n int) []byte {
	if p, ok := bufs.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n, n+n/4) // headroom, so the next batch fits too
}

// putBuf gives b back to the pool.
func putBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	bufs.Put(&b)
}

// snappyEncode compresses a marshalled push request as Loki expects: the
// snappy block format, not the framed one.
func snappyEncode(raw []byte) []byte { return snappy.Encode(nil, raw) }

// ackAll tells every source its entries of this batch are done with, in the
// order they were consumed.
func (b *batch) ackAll() {
	for _, a := range b.acks {
		a.to.Ack(a.pos)
	}
}
