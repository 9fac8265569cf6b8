package loki

import (
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/sizepool"
)

// Batching: a tenant's entries are grouped into batches, one push request
// each, and within a batch into streams by label set; a batch also keeps
// what is needed to acknowledge its entries once it is settled. The bytes
// live in pooled chunks outside the Go heap. How an entry is written into
// them, and a batch into a push body, and how both are read back, is in
// protobuf.go.

// batch is one push request in the making: a tenant's entries grouped into
// streams by label set, plus what is needed to acknowledge them afterwards.
type batch struct {
	created time.Time      // when the first entry arrived; BatchWait counts from here
	streams []stream       // in order of first appearance
	index   map[string]int // Labels -> position in streams
	last    int            // position of the stream of the last entry added
	// recent: positions of streams find looked up lately (see find).
	recent   [8]int
	recentAt int
	acks     []ack // in consumption order; entries without an Acker are left out
	entries  int
	bytes    int64 // sum of Entry.Size(): what BatchSize limits
	charge   int64 // what the queue bound was charged: see queueCharge
	// replay: per stream (position in streams), the times of its entries
	// marked Replay, which skipStored checks with Loki; nil: none.
	replay map[int]replaySpan
	// skipped entries (and their bytes) Loki held already: not sent, still
	// acknowledged.
	skipped      int
	skippedBytes int64
	// unencodable entries (and their bytes) have a time that a protobuf
	// Timestamp cannot carry (outside the years 1 to 9999): they are left out
	// of the request and counted dropped ("encode") when the batch is pushed.
	// A source's times always fit; only a foreign Consumer can send these.
	unencodable      int
	unencodableBytes int64
}

// stream is one stream of a batch with its entries already in wire form:
// each is field 2 of a push.Stream message (tag, length, EntryAdapter), so
// a queued entry costs its encoded bytes and nothing else (no push.Entry,
// no line string kept for it), and a push is one copy of each body. It was
// push.Entry slices, grown by doubling, and a marshal pass per push: a
// sixth of podtail's CPU. The bytes are in chunks that double in size up
// to maxChunk, never copied to grow (one growing slice was copied about
// four times over: a tenth of podtail's CPU); an entry is never split.
type stream struct {
	labels string
	chunks [][]byte
	size   int // bytes in chunks
	n      int // entries
}

const (
	firstChunk = 1 << 10
	maxChunk   = 32 << 10 // the largest small allocation: larger ones are zeroed apart
)

// room returns the chunk to write an entry of n bytes to.
func (s *stream) room(n int) []byte {
	k := len(s.chunks)
	if k > 0 {
		if c := s.chunks[k-1]; cap(c)-len(c) >= n {
			return c
		}
	}
	size := firstChunk
	if k > 0 {
		size = min(2*cap(s.chunks[k-1]), maxChunk)
	}
	var c []byte
	if n <= size {
		c = getChunk(size)
	} else {
		c = make([]byte, 0, n) // an entry larger than the chunk: its own
	}
	s.chunks = append(s.chunks, c)
	return c
}

// chunks holds the queue's bytes, by size, firstChunk to maxChunk (6
// sizes), outside the Go heap (sizepool.Bytes): on the heap an 8 MiB queue
// cost 16 MiB, since the collector lets the heap reach twice what is live,
// and the queue was a third of the live heap over 1,000 files. Pooled
// since zeroing and collecting fresh ones was a twentieth of podtail's CPU
// with full-size chunks, and with 4,000 streams (1,000 files), whose few
// kilobytes per batch stay in the small sizes, the small ones were 38 % of
// all it allocated. Memory idle for chunkKeep goes back to the kernel.
var chunks = sizepool.NewBytes(firstChunk, 6, chunkKeep)

const chunkKeep = 10 * time.Second

// getChunk returns an empty chunk of size bytes (pooled when size is one
// of the sizes: it is not after a chunk made for an entry larger than the
// chunk it would have gone to).
func getChunk(size int) []byte { return chunks.Get(size) }

// release gives b's chunks back for later batches. Nothing may read b's
// entries afterwards.
func (b *batch) release() {
	for i := range b.streams {
		b.streams[i].release()
	}
}

// release gives s's chunks back. Every chunk must come back this way: the
// garbage collector does not see them.
func (s *stream) release() {
	for _, c := range s.chunks {
		chunks.Put(c)
	}
	s.chunks = nil
}

// entryOverhead is what an entry costs in memory besides its line and
// metadata, charged to the queue bound so that the bound holds for memory
// and not only for payload: a queue of 10-byte lines would otherwise take
// several times its bound. Measured: 11 to 49 bytes of heap per queued
// entry in this package (its wire framing and time, the bodies' spare
// capacity as they grow), plus the source's in-flight record
// (pipeline.Stream: 32 bytes, up to twice that as its slice grows). (It was
// 256 while batches held push.Entry values.)
const entryOverhead = 128

// queueCharge is what e counts against the queue bound.
func queueCharge(e *pipeline.Entry) int64 { return int64(e.Size()) + entryOverhead }

// ack is one call to make once the batch is settled: Ack(pos) on to, which
// settles every entry of to's source up to pos, so it stands for the run of
// that source's entries it ends.
type ack struct {
	to  pipeline.Acker
	pos int64
}

func newBatch(now time.Time) *batch {
	return &batch{created: now, index: make(map[string]int)}
}

func (b *batch) add(e *pipeline.Entry) {
	b.entries++
	b.bytes += int64(e.Size())
	b.charge += queueCharge(e)
	if e.Ack != nil {
		// Ack means "everything up to pos" (pipeline.Acker), so a run of one
		// source's entries needs only its last ack: one call (and one stored
		// position) per run instead of one per line.
		if n := len(b.acks); n > 0 && b.acks[n-1].to == e.Ack && b.acks[n-1].pos <= e.Pos {
			b.acks[n-1].pos = e.Pos
		} else {
			b.acks = append(b.acks, ack{to: e.Ack, pos: e.Pos})
		}
	}
	sec, nsec := e.Time.Unix(), int64(e.Time.Nanosecond())
	if sec < minTimestampSec || sec >= maxTimestampSec {
		b.unencodable++
		b.unencodableBytes += int64(e.Size())
		return
	}
	// A source's entries come in runs of one stream: the last stream is
	// checked first (the same string, so compared by pointer) before
	// hashing a hundred bytes of labels per entry.
	i := b.last
	if i >= len(b.streams) || b.streams[i].labels != e.Labels {
		i = b.find(e.Labels)
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
	b.streams[i].add(sec, nsec, e.Line, e.Metadata)
}

// find returns the position of the stream of labels, added if new. A few
// recent streams are compared first: a file's lines alternate between the
// streams of its levels, and a source passes the same label string every
// time, so comparing it costs a pointer check where the map hashed a
// hundred bytes.
func (b *batch) find(labels string) int {
	for _, i := range b.recent {
		if i < len(b.streams) && b.streams[i].labels == labels {
			return i
		}
	}
	i, ok := b.index[labels]
	if !ok {
		i = len(b.streams)
		b.index[labels] = i
		b.streams = append(b.streams, stream{labels: labels})
	}
	b.recent[b.recentAt] = i
	b.recentAt = (b.recentAt + 1) % len(b.recent)
	return i
}

// ackAll tells every source its entries of this batch are done with, in the
// order they were consumed: one call per run of a source's entries.
func (b *batch) ackAll() {
	for _, a := range b.acks {
		a.to.Ack(a.pos)
	}
}
