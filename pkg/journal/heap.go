package journal

// The sources holding a candidate form a binary min-heap, so that picking
// the next entry among many files (a long archive of rotated files) costs
// O(log n) rather than a comparison with every file.

// before orders two candidates: by seqnum between files numbered by the
// same journald, by realtime between others, then by the order the files
// were opened.
func before(a, b *source) bool {
	if a.f.hdr.seqnumID == b.f.hdr.seqnumID {
		if a.candSeq != b.candSeq {
			return a.candSeq < b.candSeq
		}
	} else if a.candRT != b.candRT {
		return a.candRT < b.candRT
	}
	return a.order < b.order
}

func (r *Reader) heapPush(s *source) {
	s.heapIdx = len(r.heap)
	r.heap = append(r.heap, s)
	r.heapUp(s.heapIdx)
}

func (r *Reader) heapRemove(i int) {
	h := r.heap
	last := len(h) - 1
	h[i].heapIdx = -1
	if i != last {
		h[i] = h[last]
		h[i].heapIdx = i
	}
	h[last] = nil
	r.heap = h[:last]
	if i != last {
		r.heapFix(i)
	}
}

func (r *Reader) heapFix(i int) {
	if !r.heapDown(i) {
		r.heapUp(i)
	}
}

func (r *Reader) heapUp(i int) {
	h := r.heap
	for i > 0 {
		p := (i - 1) / 2
		if !before(h[i], h[p]) {
			break
		}
		r.heapSwap(i, p)
		i = p
	}
}

// heapDown sifts i down and reports whether it moved.
func (r *Reader) heapDown(i int) bool {
	h := r.heap
	start := i
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if c+1 < len(h) && before(h[c+1], h[c]) {
			c++
		}
		if !before(h[c], h[i]) {
			break
		}
		r.heapSwap(i, c)
		i = c
	}
	return i != start
}

func (r *Reader) heapSwap(i, j int) {
	h := r.heap
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
