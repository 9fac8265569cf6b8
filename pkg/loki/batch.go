package loki

import (
	"fmt"
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
	acks    []ack          // in consumption order; entries without an Acker are left out
	entries int
	bytes   int64 // sum of Entry.Size(): what BatchSize limits
	charge  int64 // what the queue bound was charged: see queueCharge
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
	i, ok := b.index[e.Labels]
	if !ok {
		i = len(b.streams)
		b.index[e.Labels] = i
		b.streams = append(b.streams, push.Stream{Labels: e.Labels})
	}
	b.streams[i].Entries = append(b.streams[i].Entries, push.Entry{
		Timestamp:          e.Time,
		Line:               e.Line,
		StructuredMetadata: e.Metadata,
	})
	if e.Ack != nil {
		b.acks = append(b.acks, ack{e.Ack, e.Pos})
	}
	b.entries++
	b.bytes += int64(e.Size())
	b.charge += queueCharge(e)
}

// encode renders the batch as Loki's default push body: snappy block format
// around the protobuf PushRequest.
func (b *batch) encode() ([]byte, error) {
	req := push.PushRequest{Streams: b.streams}
	raw, err := req.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal push request: %w", err)
	}
	return snappyEncode(raw), nil
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
