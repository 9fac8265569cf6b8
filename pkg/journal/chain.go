package journal

// chain walks one list of entry offsets, in file (and so seqnum) order:
// either the file's list of all entries (header entry_array_offset, counted
// by the header's n_entries) or the entries holding one DATA object (the
// first inline in the object, the others in the chain from its
// entry_array_offset, counted by its n_entries).
//
// journald writes an entry, links it into these arrays and only then raises
// the count, so items below the count are there to read; the position is
// kept so that a growing list is followed without walking it again.
type chain struct {
	data uint64 // DATA object, or 0 for the list of all entries
	idx  uint64 // position: index of the next item

	arr      uint64 // ENTRY_ARRAY holding items from arrStart on; 0: none yet
	arrStart uint64 // index (not counting a DATA object's inline item) of arr's first item
	arrCap   uint64 // items arr can hold
}

// count is how many items the list holds now.
func (c *chain) count(f *file) uint64 {
	if c.data == 0 {
		return f.nEntries()
	}
	return f.counter(c.data + dataNEntries)
}

func (c *chain) head(f *file) uint64 {
	if c.data == 0 {
		return f.entryArrayHead()
	}
	return le64(f.m, int(c.data+dataEntryArrayOffset))
}

// item returns the entry offset at index i (< count). ok is false when the
// item is not linked yet, which a live file may show for an instant.
func (c *chain) item(f *file, i uint64) (off uint64, ok bool, err error) {
	if c.data != 0 {
		if i == 0 {
			return c.checkItem(f, c.data, le64(f.m, int(c.data+dataEntryOffset)))
		}
		i--
	}
	arr, ok, err := c.locate(f, i)
	if !ok || err != nil {
		return 0, ok, err
	}
	j := arrayItems + (i-c.arrStart)*f.arrayItemSize
	if f.arrayItemSize == 4 {
		off = le32(arr, int(j))
	} else {
		off = le64(arr, int(j))
	}
	return c.checkItem(f, c.arr, off)
}

// checkItem turns an unset item into "not yet" while journald may still be
// writing the file, and into an error once it is not.
func (c *chain) checkItem(f *file, where, off uint64) (uint64, bool, error) {
	if off != 0 {
		return off, true, nil
	}
	if f.state() == stateOnline {
		return 0, false, nil
	}
	return 0, false, f.errAt(where, "entry list holds no entry where its count says one is")
}

// locate moves to the ENTRY_ARRAY holding array index i and returns it.
func (c *chain) locate(f *file, i uint64) ([]byte, bool, error) {
	if c.arr == 0 || i < c.arrStart {
		head := c.head(f)
		if head == 0 {
			_, ok, err := c.checkItem(f, c.data, 0)
			return nil, ok, err
		}
		c.arr, c.arrStart, c.arrCap = head, 0, 0
	}
	arr, err := f.object(c.arr, objEntryArray)
	if err != nil {
		return nil, false, err
	}
	c.arrCap = (uint64(len(arr)) - arrayItems) / f.arrayItemSize
	for i >= c.arrStart+c.arrCap {
		next := le64(arr, arrayNext)
		if next == 0 {
			_, ok, err := c.checkItem(f, c.arr, 0)
			return nil, ok, err
		}
		// Arrays are appended, so a chain only goes forward; anything else
		// would be a loop in a corrupt file.
		if next <= c.arr {
			return nil, false, f.errAt(c.arr, "entry array chain goes back to %#x", next)
		}
		if arr, err = f.object(next, objEntryArray); err != nil {
			return nil, false, err
		}
		c.arr, c.arrStart = next, c.arrStart+c.arrCap
		c.arrCap = (uint64(len(arr)) - arrayItems) / f.arrayItemSize
		if c.arrCap == 0 {
			return nil, false, f.errAt(next, "entry array holds no item")
		}
	}
	return arr, true, nil
}

// peek returns the entry at the position, if there is one now.
func (c *chain) peek(f *file) (uint64, bool, error) {
	if c.idx >= c.count(f) {
		return 0, false, nil
	}
	return c.item(f, c.idx)
}

func (c *chain) advance() { c.idx++ }

// seek moves forward to the first item, from the position on, for which
// after is true; after must be false then true along the list (it is:
// entries are ordered by seqnum, and by realtime but for clock jumps). It
// skips whole arrays by their last item and bisects the one that holds the
// first match. found is false if no item yet is after.
func (c *chain) seek(f *file, after func(off uint64) (bool, error)) (found bool, err error) {
	for {
		n := c.count(f)
		if c.idx >= n {
			return false, nil
		}
		if c.data != 0 && c.idx == 0 {
			off, ok, err := c.item(f, 0)
			if !ok || err != nil {
				return false, err
			}
			if yes, err := after(off); yes || err != nil {
				return yes, err
			}
			c.idx++
			continue
		}
		base := uint64(0)
		if c.data != 0 {
			base = 1 // the inline item comes before the arrays
		}
		if _, ok, err := c.locate(f, c.idx-base); !ok || err != nil {
			return false, err
		}
		last := min(c.arrStart+c.arrCap+base, n) - 1
		off, ok, err := c.item(f, last)
		if !ok || err != nil {
			return false, err
		}
		yes, err := after(off)
		if err != nil {
			return false, err
		}
		if !yes {
			c.idx = last + 1
			continue
		}
		lo, hi := c.idx, last
		for lo < hi {
			mid := lo + (hi-lo)/2
			off, ok, err := c.item(f, mid)
			if !ok || err != nil {
				return false, err
			}
			if yes, err = after(off); err != nil {
				return false, err
			}
			if yes {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		c.idx = lo
		return true, nil
	}
}
