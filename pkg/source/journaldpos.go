package source

import (
	"fmt"

	"github.com/podtail/podtail/pkg/journal"
	"github.com/podtail/podtail/pkg/source/positions"
)

// sentLine is a line handed over: its position, and the cursor of its last
// entry.
type sentLine struct {
	pos    int64
	cursor journal.Cursor
	read   int64 // JournalOutput.nread when it was sent
}

// resume is the cursor reading starts after (zero: the start), and whether
// a journal position is stored. A stored cursor is "" when a line from the
// container's first entry on was not delivered, though later ones were
// (DeliveredCursor): the delivered cursors apply all the same.
func (o *JournalOutput) resume() (journal.Cursor, bool, error) {
	p, ok := o.store.Get(o.key)
	if !ok || (p.Cursor == "" && p.DeliveredCursor == "") {
		return journal.Cursor{}, false, nil
	}
	// Not ours to guess when a cursor does not parse: reading from the
	// start could re-send the container's whole history.
	parse := func(what, s string) (journal.Cursor, error) {
		if s == "" {
			return journal.Cursor{}, nil
		}
		c, err := journal.ParseCursor(s)
		if err != nil {
			return c, fmt.Errorf("positions %s: %s: %s%w", o.store.Path(), o.key, what, err)
		}
		return c, nil
	}
	after, err := parse("", p.Cursor)
	if err == nil {
		o.skipTo, err = parse("delivered_cursor: ", p.DeliveredCursor)
	}
	for stream, v := range p.DeliveredCursors {
		if err != nil {
			break
		}
		if o.skipBy == nil {
			o.skipBy = map[string]journal.Cursor{}
		}
		o.skipBy[stream], err = parse("delivered_cursors: "+stream+": ", v)
	}
	if err != nil {
		return journal.Cursor{}, true, err
	}
	o.stream.Restore(p.Last)
	o.last = after
	return after, true, nil
}

// skipToEnd passes over what the journal holds now (discovery.existing_from
// "end") and stores the position there.
func (o *JournalOutput) skipToEnd(r *journal.Reader) error {
	var e journal.Entry
	for {
		ok, err := r.Next(&e)
		if err != nil {
			return fmt.Errorf("container %s: journal: %w", o.target.Name, err)
		}
		if !ok {
			break
		}
		o.last = e.Cursor
	}
	if !o.last.IsZero() {
		o.store.Put(o.key, positions.Position{Cursor: o.last.String()})
	}
	return nil
}

// acked stores the cursor up to which everything was delivered. Reading
// must resume before the first part of a line split into partial entries,
// or the first line of a multi-line entry, not yet delivered, so the cursor
// stays there and DeliveredCursor records the rest; a stream with such a
// multi-line entry gets its own, before the entry's first line (its later
// lines are in the entry, or after it), so they are read and joined again.
func (o *JournalOutput) acked(pos int64, last map[string]int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := 0
	for i < len(o.sent) && o.sent[i].pos <= pos {
		i++
	}
	if i == 0 {
		return
	}
	delivered := o.sent[i-1].cursor
	o.ackedPub.Store(o.sent[i-1].read)
	if i == len(o.sent) {
		// Give the array back: kept, it stays as large as the most this
		// reader ever had in flight (72 bytes a line), for each container.
		o.sent = nil
	} else {
		o.sent = append(o.sent[:0], o.sent[i:]...)
	}
	resume := delivered
	kept := o.chains[:0]
	for _, ch := range o.chains {
		if ch.done && ch.pos <= pos {
			continue // delivered whole
		}
		kept = append(kept, ch)
		if cursorAfter(resume, ch.before) {
			resume = ch.before
		}
	}
	clear(o.chains[len(kept):])
	o.chains = kept
	var by map[string]string
	o.joins.settle(pos, func(stream string, before journal.Cursor) {
		if !cursorAfter(delivered, before) {
			return
		}
		if by == nil {
			by = map[string]string{}
		}
		by[stream] = cursorString(before)
		if cursorAfter(resume, before) {
			resume = before
		}
	})
	p := positions.Position{Cursor: cursorString(resume), Last: last}
	if resume != delivered {
		p.DeliveredCursor, p.DeliveredCursors = delivered.String(), by
	}
	o.store.Put(o.key, p)
}

// cursorString is c's string form, "" for the zero cursor (the start).
func cursorString(c journal.Cursor) string {
	if c.IsZero() {
		return ""
	}
	return c.String()
}

// cursorAfter reports whether a is past b in the journal: by sequence number
// within one journal (same seqnum ID), else by time.
func cursorAfter(a, b journal.Cursor) bool {
	if a.SeqnumID == b.SeqnumID {
		return a.Seqnum > b.Seqnum
	}
	return a.Realtime > b.Realtime
}

// inFlight is how many lines sent are not acknowledged yet.
func (o *JournalOutput) inFlight() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return int64(len(o.sent))
}
