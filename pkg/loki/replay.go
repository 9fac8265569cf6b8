package loki

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// A podtail that is killed (or stopped past shutdown_timeout) has sent more
// than its positions file says: the push in flight, and pushes acknowledged
// in the last few milliseconds before the kill. The next podtail resumes at
// the stored positions and sends those lines again. Loki recognises an
// identical resend only while it sits in the stream's head block: measured,
// ten SIGKILLs of a podtail shipping 4,000 lines/s left 6 duplicates among
// 80,000 lines in one run of three. So entries a source marks as possibly
// sent before (pipeline.Entry.Replay: data that was there when it started,
// past the acknowledged position) are checked first: for each stream of a
// batch holding such entries, Loki is asked which entries it holds in their
// time range, and those are not sent again.
//
// What an earlier podtail stored past the positions is, per stream, the
// first part of the resend (a tenant's pushes go one at a time, in order).
// So once a stream's check finds the last of its replayed entries missing,
// the stream is clean: later batches are not checked. Only entries stamped
// before this client started can have been sent before; later ones are not
// checked either. This needs Loki's query API beside the push URL; when it
// does not answer, the entries are sent (Loki may keep duplicates) and
// checks stop for the rest of the run.

// replaySpan is the time range of one stream's replayed entries in a batch.
type replaySpan struct {
	from, to int64 // unix ns, inclusive
	n        int
}

// storedKey is an entry as Loki returns it.
type storedKey struct {
	ns   int64
	line string
}

// replayPage is how many entries one query asks for: Loki refuses more than
// max_entries_limit_per_query (5,000 by default), and caps an answer at 4 MB.
const replayPage = 1000

// skipStored removes from b the entries Loki already holds among those
// replayed, counting them in b.skipped and b.skippedBytes.
func (c *Client) skipStored(ctx context.Context, t *tenant, b *batch, log *zap.Logger) {
	entries, bytes := 0, int64(0)
	defer func() { b.skipped, b.skippedBytes = b.skipped+entries, b.skippedBytes+bytes }()
	for i, span := range b.replay {
		s := &b.streams[i]
		if _, ok := t.replayClean[s.labels]; ok {
			continue
		}
		if c.replayOff.Load() {
			c.m.replayed.WithLabelValues(t.id, "unverified").Add(float64(span.n))
			continue
		}
		stored, err := c.storedBetween(ctx, t.id, s.labels, span.from, span.to+1)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.replayOff.Store(true)
			log.Warn("Cannot ask Loki which resent entries it holds already; sending them (Loki may keep duplicates of what the podtail before this one sent)",
				zap.String("stream", s.labels), zap.Error(err))
			c.m.replayed.WithLabelValues(t.id, "unverified").Add(float64(span.n))
			continue
		}
		lastStored, removed := false, 0
		err = s.filter(func(e wireEntry) bool {
			if _, ok := stored[storedKey{e.ns, e.line}]; ok {
				removed++
				bytes += int64(e.size)
				if e.ns == span.to {
					lastStored = true
				}
				return false
			}
			return true
		})
		if err != nil { // not from a body this package wrote
			log.Error("Cannot read back a batch's entries; sending it as it is", zap.Error(err))
			continue
		}
		entries += removed
		if !lastStored {
			if t.replayClean == nil {
				t.replayClean = map[string]struct{}{}
			}
			t.replayClean[s.labels] = struct{}{}
		}
		c.m.replayed.WithLabelValues(t.id, "sent").Add(float64(span.n - min(span.n, removed)))
	}
	if entries > 0 {
		// A stream left without entries is not sent at all. (The batch is
		// sealed: its index of streams is no longer used.)
		kept := b.streams[:0]
		for _, s := range b.streams {
			if s.n > 0 {
				kept = append(kept, s)
			}
		}
		clear(b.streams[len(kept):])
		b.streams = kept
		c.m.replayed.WithLabelValues(t.id, "stored").Add(float64(entries))
		log.Info("Not sending again entries Loki holds already (sent by the podtail before this one)", zap.Int("skipped", entries))
	}
}

// storedBetween returns the entries Loki holds in stream labels in
// [from, to).
func (c *Client) storedBetween(ctx context.Context, tenant, labels string, from, to int64) (map[storedKey]struct{}, error) {
	out := map[storedKey]struct{}{}
	for {
		values, err := c.queryStream(ctx, tenant, labels, from, to, replayPage)
		if err != nil {
			return nil, err
		}
		fresh := 0
		for _, v := range values {
			ns, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				continue
			}
			k := storedKey{ns, v[1]}
			if _, ok := out[k]; !ok {
				out[k] = struct{}{}
				fresh++
			}
			from = max(from, ns) // the next page starts at the last time seen: entries may share it
		}
		if len(values) < replayPage || fresh == 0 {
			return out, nil
		}
	}
}

// replayable reports whether e, marked Replay by its source, needs checking:
// only entries stamped before the client started can have been sent by a
// podtail that ran before.
func (c *Client) replayable(t time.Time) bool { return !t.After(c.started) }
