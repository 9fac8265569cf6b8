package source

import (
	"bytes"
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/journal"
	"github.com/podtail/podtail/pkg/labels"
)

// journalChain is a line conmon split into partial entries: the cursor of
// the entry read before its first part (where reading must resume while
// the line is not delivered), and its joined content so far.
type journalChain struct {
	stream  string
	before  journal.Cursor
	time    time.Time
	content []byte
	// skipping: the line went over the line limit and was shipped truncated
	// (or dropped); its remaining parts are passed over.
	skipping bool
	// pos is the position of the line sent for it (0: none yet, passed
	// over after a restart, or given to a joiner, whose entry holds the
	// position from then on); done: its last part was read. It is
	// delivered once done and pos acknowledged.
	pos  int64
	done bool
}

// read hands on what the journal holds now, a bounded batch at a time, and
// returns how many entries it read.
func (o *JournalOutput) read(ctx context.Context, r *journal.Reader, e *journal.Entry) (int, error) {
	const batch = 1024 // entries between two hand-overs to the sink
	n := 0
	defer func() { o.readPub.Store(o.nread) }()
	for n < batch {
		if ctx.Err() != nil {
			return n, nil // stopping: what is not sent is read again after a restart
		}
		ok, err := r.Next(e)
		if err != nil {
			// A damaged journal file or entry: the reader skips it, and
			// says so once (podtail_source_malformed_lines_total is for
			// container log lines not in CRI format, not for this).
			o.log.Error("journal", zap.Error(err))
			continue
		}
		if !ok {
			return n, nil
		}
		n++
		if err := o.entry(ctx, e); err != nil {
			return n, err
		}
		o.last = e.Cursor
	}
	return n, nil
}

// entry ships one journal entry, or joins it to the line it is part of.
func (o *JournalOutput) entry(ctx context.Context, e *journal.Entry) error {
	msg, _ := e.Field(fieldMessage)
	o.bytesN.Add(float64(len(msg)))
	o.nread += int64(len(msg))
	// conmon ends every entry, partial ones included, with the newline it
	// split at or a newline of its own; a partial entry's content has none.
	msg = bytes.TrimSuffix(msg, []byte{'\n'})
	prio, _ := e.Field(fieldPriority)
	stream := streamOfPriority(prio)
	partialV, _ := e.Field(fieldPartial)
	partial := string(partialV) == "true"

	ch := o.chain(stream)
	if ch != nil && ch.skipping {
		if !partial {
			o.mu.Lock()
			o.endChain(ch)
			o.mu.Unlock()
		}
		return nil
	}
	limit, _ := o.stream.LineLimit()
	if partial && (ch == nil || len(ch.content)+len(msg) <= limit) {
		if ch == nil {
			ch = &journalChain{stream: stream, before: o.last, time: e.Time()}
			o.mu.Lock()
			o.chains = append(o.chains, ch)
			o.mu.Unlock()
		}
		ch.content = append(ch.content, msg...)
		return nil
	}
	t, line, before := e.Time(), string(msg), o.last
	if ch != nil {
		t, line, before = ch.time, string(ch.content)+line, ch.before
	}
	var pos int64
	if !o.delivered(stream, e.Cursor) {
		var err error
		if pos, err = o.emit(ctx, t, stream, line, before, e.Cursor); err != nil {
			return err
		}
	}
	if ch == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ch.pos = pos
	if partial {
		// Over the line limit with parts still to come: what was sent was
		// truncated (or dropped) by the stream; the rest is passed over
		// until the line's last part.
		ch.skipping, ch.content = true, nil
		return nil
	}
	o.endChain(ch)
	return nil
}

// chain is the line being joined on stream, or nil.
func (o *JournalOutput) chain(stream string) *journalChain {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ch := range o.chains {
		if ch.stream == stream && !ch.done {
			return ch
		}
	}
	return nil
}

// endChain records that ch's last part was read. o.mu is held.
func (o *JournalOutput) endChain(ch *journalChain) {
	ch.done, ch.content = true, nil
	if ch.pos == 0 {
		// Nothing was sent for it (delivered before a restart): nothing
		// holds the resume point back.
		for i, c := range o.chains {
			if c == ch {
				o.chains = append(o.chains[:i], o.chains[i+1:]...)
				break
			}
		}
	}
}

// delivered says whether a line of stream ending at entry c was delivered
// before a restart.
func (o *JournalOutput) delivered(stream string, c journal.Cursor) bool {
	to, ok := o.skipBy[stream]
	if !ok {
		to = o.skipTo
	}
	return !to.IsZero() && !cursorAfter(c, to)
}

// emit hands on one line of stream, through the stream's joiner when it has
// one, and returns the position it was sent with (0: joined). before is
// the cursor of the entry read before the line's first, cursor that of
// its last.
func (o *JournalOutput) emit(ctx context.Context, t time.Time, stream, line string, before, cursor journal.Cursor) (int64, error) {
	if !o.joins.has(stream) {
		return o.send(ctx, t, stream, line, cursor, nil)
	}
	o.linesN.Inc()
	return 0, o.sendJoined(ctx, o.joins.add(stream, line, t, before, o.clock.Now()), cursor)
}

// flushJoined sends the joined entries whose max_wait has passed (or all,
// if force); cursor is the last entry read.
func (o *JournalOutput) flushJoined(ctx context.Context, cursor journal.Cursor, force bool) error {
	return o.sendJoined(ctx, o.joins.flush(o.clock.Now(), force), cursor)
}

func (o *JournalOutput) sendJoined(ctx context.Context, out []joinedOut[journal.Cursor], cursor journal.Cursor) error {
	for _, j := range out {
		if _, err := o.send(ctx, j.Time, j.stream, j.Line, cursor, j.e); err != nil {
			return err
		}
	}
	return nil
}

// send hands one line, or a joined entry e, to the stream and returns its
// position. cursor is the last entry read: everything up to it is sent
// before this or is held (a chain, a joined entry) on its own.
func (o *JournalOutput) send(ctx context.Context, t time.Time, stream, line string, cursor journal.Cursor, e *joinEntry[journal.Cursor]) (int64, error) {
	o.mu.Lock()
	o.seq++
	pos := o.seq
	o.sent = append(o.sent, sentLine{pos: pos, cursor: cursor, read: o.nread})
	if e != nil {
		e.tok = pos // before it is sent: a stage may drop it, acknowledged at once
	}
	o.mu.Unlock()
	if err := o.stream.Send(ctx, t, line, pos, labels.Stream, stream); err != nil {
		return pos, handOver(ctx, o.target, err)
	}
	if e == nil {
		o.linesN.Inc() // a joined entry's lines were counted as they came
	}
	return pos, nil
}

// sendDangling ships the lines left unfinished by a container that is gone.
func (o *JournalOutput) sendDangling(ctx context.Context) {
	o.mu.Lock()
	var open []*journalChain
	for _, ch := range o.chains {
		if !ch.done && !ch.skipping && len(ch.content) > 0 {
			open = append(open, ch)
		}
	}
	o.mu.Unlock()
	for _, ch := range open {
		pos, err := o.emit(ctx, ch.time, ch.stream, string(ch.content), ch.before, o.last)
		if err != nil {
			return
		}
		o.mu.Lock()
		ch.pos = pos
		o.endChain(ch)
		o.mu.Unlock()
	}
}

func (o *JournalOutput) flush(ctx context.Context) error {
	return handOver(ctx, o.target, o.stream.Flush(ctx))
}

// streamOfPriority tells stdout from stderr: conmon 2.1 logs stdout at
// PRIORITY 6 (info) and stderr at 3 (err). conmon 2.2 also takes a line's
// own "<N>" prefix as its priority (sd-daemon style); such lines are put on
// stderr when N is err or worse (0-3), else on stdout.
func streamOfPriority(p []byte) string {
	if len(p) == 1 && p[0] >= '0' && p[0] <= '3' {
		return Stderr
	}
	return Stdout
}
