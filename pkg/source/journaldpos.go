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
}

// resume is the cursor reading starts after: the stored one, or none.
func (o *JournalOutput) resume() (journal.Cursor, error) {
	p, ok := o.store.Get(o.key)
	if !ok || p.Cursor == "" {
		return journal.Cursor{}, nil
	}
	after, err := journal.ParseCursor(p.Cursor)
	if err != nil {
		// Not ours to guess: reading from the start could re-send the
		// container's whole history.
		return journal.Cursor{}, fmt.Errorf("positions %s: %s: %w", o.store.Path(), o.key, err)
	}
	if p.DeliveredCursor != "" {
		if o.skipTo, err = journal.ParseCursor(p.DeliveredCursor); err != nil {
			return journal.Cursor{}, fmt.Errorf("positions %s: %s: delivered_cursor: %w", o.store.Path(), o.key, err)
		}
	}
	o.stream.Restore(p.Last)
	o.last = after
	return after, nil
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
// must resume before the first part of a joined line not yet delivered, so
// the cursor stays there and DeliveredCursor records the rest.
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
	p := positions.Position{Cursor: resume.String(), Last: last}
	if resume.IsZero() {
		p.Cursor = ""
	}
	if resume != delivered {
		p.DeliveredCursor = delivered.String()
	}
	o.store.Put(o.key, p)
}

// cursorAfter reports whether a is past b in the journal: by sequence number
// within one journal (same seqnum ID), else by time.
func cursorAfter(a, b journal.Cursor) bool {
	if a.SeqnumID == b.SeqnumID {
		return a.Seqnum > b.Seqnum
	}
	return a.Realtime > b.Realtime
}
