// Package pipeline holds the entry type that flows from sources to the sink,
// the interfaces between them, and (later) the parsing stages in between.
//
// Ownership: a source builds an Entry and hands it to a Consumer; from then on
// the consumer owns it. When Loki has acknowledged the entry (2xx) or the sink
// has given it up for a counted, permanent reason, the sink calls
// e.Ack.Ack(e.Pos). Positions therefore advance only on delivery.
package pipeline

import (
	"context"
	"time"
)

// Label is one pair of structured metadata. The sink writes it as Loki's
// push.LabelAdapter (the tests hold the encoding to Loki's generated code);
// a type of podtail's own keeps Loki's push package, and the gRPC and gogo
// protobuf code it brings, out of the binary: 4.8 MB of its 28, 2.5 MiB of
// its resident memory.
type Label struct{ Name, Value string }

// Entry is one log line on its way to Loki.
type Entry struct {
	// Tenant is the X-Scope-OrgID the line is pushed under. It only ever
	// comes from trusted metadata (container labels, path rules), never from
	// the line itself.
	Tenant string
	// Labels is the stream's label set rendered the way Loki's push API wants
	// it, e.g. `{application="shop", stream="stdout", tenant="acme"}`.
	// Sources render it once per stream; the sink groups entries by it.
	Labels string
	// Time is the line's own time (the container runtime's or the app's),
	// never the time podtail read it.
	Time time.Time
	Line string
	// Metadata is Loki structured metadata: high-cardinality facts that must
	// not become labels.
	Metadata []Label
	// Replay says a podtail that ran before this one may already have sent
	// this entry: its source read it from data that was there when the
	// source started, past the position Loki had acknowledged. Loki drops
	// an identical resend only while it sits in the stream's head block, so
	// the sink asks Loki which of these it holds before sending them.
	Replay bool

	// Ack is told when this entry is delivered or permanently given up; nil
	// when nobody needs to know. Pos is the source's opaque position token.
	Ack Acker
	Pos int64
}

// Size is the number of bytes the entry accounts for in memory bounds.
func (e *Entry) Size() int {
	n := len(e.Line)
	for _, m := range e.Metadata {
		n += len(m.Name) + len(m.Value)
	}
	return n
}

// Acker learns which entries of its source have been delivered.
//
// The sink calls Ack for each source's entries in the order it consumed them
// (a source feeds exactly one tenant, and a tenant's batches are pushed one at
// a time), so an Acker may treat pos as "everything up to and including pos".
// Ack must not block.
type Acker interface {
	Ack(pos int64)
}

// CumulativeAcker is an Acker for which Ack(pos) settles every entry up to
// pos, so a sink may skip the acks of a run of its entries but the last:
// one call per batch instead of one per line (a source may store its
// position on each call).
type CumulativeAcker interface {
	Acker
	AcksCumulative() bool
}

// Consumer takes entries. Consume blocks while the pipeline is full, which
// is how backpressure reaches the sources, and returns ctx.Err() if ctx ends
// first. After Consume returns nil the consumer owns e.
type Consumer interface {
	Consume(ctx context.Context, e Entry) error
}

// BatchConsumer is a Consumer that also takes a run of entries of one
// tenant in one call: one hand-over (one lock, one admission check) per
// read of a file instead of one per line.
type BatchConsumer interface {
	Consumer
	// ConsumeBatch takes es in order, blocking as Consume does. It returns
	// how many it took (the consumer owns those); when not all, the error
	// Consume would have returned for the first one left.
	ConsumeBatch(ctx context.Context, es []Entry) (int, error)
}

// LineCopier is a Consumer that keeps nothing of an entry's Line and
// Metadata once Consume (or ConsumeBatch) has returned: it copied what it
// needs. A source may then pass lines that point into its own read buffer
// (see Stream.BorrowLines) instead of copying each line out first.
type LineCopier interface {
	CopiesLines() bool
}

// CopiesLines reports whether c is a LineCopier that says so.
func CopiesLines(c Consumer) bool {
	l, ok := c.(LineCopier)
	return ok && l.CopiesLines()
}

// ConsumeAll hands es to c in order, in one call when c is a BatchConsumer.
func ConsumeAll(ctx context.Context, c Consumer, es []Entry) (int, error) {
	if b, ok := c.(BatchConsumer); ok {
		return b.ConsumeBatch(ctx, es)
	}
	for i := range es {
		if err := c.Consume(ctx, es[i]); err != nil {
			return i, err
		}
	}
	return len(es), nil
}

// ConsumerFunc adapts a function to Consumer.
type ConsumerFunc func(ctx context.Context, e Entry) error

// Consume calls f.
func (f ConsumerFunc) Consume(ctx context.Context, e Entry) error { return f(ctx, e) }
