package journal

import "slices"

// A group is the files numbered by one journald (one seqnum_id): its
// active file and the archives rotated from it, and its per-user files.
// Seqnums run on across the group's files without a hole unless a file was
// deleted; the group keeps the highest seqnum up to which holes were
// counted, so each missing entry is counted once.
type group struct {
	init  bool
	floor uint64
}

func (r *Reader) groupOf(id [16]byte) *group {
	g := r.groups[id]
	if g == nil {
		g = &group{}
		r.groups[id] = g
	}
	return g
}

// span is the seqnum range a file holds.
type span struct {
	g          *group
	id         [16]byte
	head, tail uint64
}

// accountGaps counts the seqnums no file holds between the last counted
// one of each group and the newest file. In After's group counting starts
// at After's seqnum; in another it starts at its oldest file, since nothing
// says what came before.
//
// All heads are read before any tail: a journald numbers entries in one
// sequence, so once a file's first entry exists, every lower seqnum is
// already in the tail of the file holding it, and a tail read later sees it.
func (r *Reader) accountGaps() {
	spans := make([]span, 0, len(r.sources))
	holders := make([]*source, 0, len(r.sources))
	for _, s := range r.sources {
		if h := s.f.headSeqnum(); h != 0 {
			spans = append(spans, span{g: s.group, id: s.f.hdr.seqnumID, head: h})
			holders = append(holders, s)
		}
	}
	for i, s := range holders {
		spans[i].tail = max(s.f.tailSeqnum(), spans[i].head)
	}
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.head < b.head:
			return -1
		case a.head > b.head:
			return 1
		}
		return 0
	})
	for _, sp := range spans {
		g := sp.g
		if !g.init {
			g.init = true
			g.floor = sp.head - 1
			if !r.after.IsZero() && sp.id == r.after.SeqnumID {
				g.floor = r.after.Seqnum
			}
		}
		if sp.tail <= g.floor {
			continue
		}
		if sp.head > g.floor+1 {
			r.gaps += sp.head - g.floor - 1
		}
		g.floor = sp.tail
	}
}
