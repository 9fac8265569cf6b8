// Package pipeline holds the entry type that flows from sources to the sink,
// the interfaces between them, and what a source runs between the two: the
// Stream (stages, per-tenant guards, labels, acknowledgements), the Stage
// interface and its runner, and the Multiline joiner. The stages themselves,
// and Build, which makes a Pipeline of them from the configuration, are in
// pkg/pipeline/stage: a source needs only this package.
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
// Ack(pos) settles every entry of the source up to and including pos: the
// sink calls it for each source's entries in the order it consumed them (a
// source feeds exactly one tenant, and a tenant's batches are pushed one at
// a time), and may skip the acks of a run of entries but the last (one call
// per batch instead of one per line; a source may store its position on
// each call). Ack must not block.
type Acker interface {
	Ack(pos int64)
}

// Consumer is the sink, as sources see it (through Stream): the one
// interface between them.
//
// Consume takes es in order: one hand-over (one lock, one admission check)
// per read of a file instead of one per line. It blocks while the sink is
// full, which is how backpressure reaches the sources, and returns how many
// it took (the consumer owns those) and, when not all, why it stopped:
// ctx.Err() if ctx ended first, or the sink closed.
//
// A Consumer keeps nothing of an entry's Line and Metadata once Consume has
// returned: it copies what it needs. A source may therefore pass lines that
// point into its own read buffer (see StreamConfig.BorrowedLines) instead of
// copying each line out first: that copy was 5 % of podtail's CPU, and all
// of its garbage but the sink's.
type Consumer interface {
	Consume(ctx context.Context, es []Entry) (int, error)
}

// ConsumerFunc adapts a function to Consumer.
type ConsumerFunc func(ctx context.Context, es []Entry) (int, error)

// Consume calls f.
func (f ConsumerFunc) Consume(ctx context.Context, es []Entry) (int, error) { return f(ctx, es) }
