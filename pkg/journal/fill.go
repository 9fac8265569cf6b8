package journal

// Reading an entry: its header makes the Cursor, its items the fields.
// With Options.Fields, an uncompressed field is kept or left by its name
// prefix alone; a compressed one must be decompressed to learn its name,
// so objects found unwanted are remembered per file.

// fill reads the candidate entry of s into e.
func (r *Reader) fill(s *source, e *Entry) error {
	f := s.f
	obj, err := f.object(s.cand, objEntry)
	if err != nil {
		return err
	}
	e.reset()
	e.Cursor = Cursor{
		SeqnumID:  f.hdr.seqnumID,
		Seqnum:    le64(obj, entrySeqnum),
		Realtime:  le64(obj, entryRealtime),
		Monotonic: le64(obj, entryMonotonic),
		XorHash:   le64(obj, entryXorHash),
	}
	copy(e.BootID[:], obj[entryBootID:])
	items := obj[entryItems:]
	n := uint64(len(items)) / f.entryItemSize
	for i := uint64(0); i < n; i++ {
		var off uint64
		if f.entryItemSize == 4 {
			off = le32(items, int(i*4))
		} else {
			off = le64(items, int(i*16))
		}
		if err := r.addField(s, off, e); err != nil {
			return err
		}
	}
	e.resolve()
	return nil
}

// addField adds the DATA object at off to e, if it is a field wanted.
func (r *Reader) addField(s *source, off uint64, e *Entry) error {
	f := s.f
	d, err := f.object(off, objData)
	if err != nil {
		return err
	}
	payload := d[f.dataPayload:]
	comp := d[objFlags] & objCompressedMask
	if comp == 0 {
		if eq, ok := fieldEq(payload, r.wanted); ok {
			e.addMapped(payload, eq)
		}
		return nil
	}
	if _, skip := s.skip[off]; skip {
		return nil
	}
	at := len(e.buf)
	if e.buf, err = r.dec.decompress(comp, payload, e.buf); err != nil {
		return f.errAt(off, "%v", err)
	}
	eq, ok := fieldEq(e.buf[at:], r.wanted)
	if !ok {
		e.buf = e.buf[:at]
		if r.wanted != nil {
			r.skipLater(s, off)
		}
		return nil
	}
	e.addBuffered(at, at+eq)
	return nil
}

// skipLater remembers a compressed DATA object holding an unwanted field;
// the set is bounded, forgetting all when full.
func (r *Reader) skipLater(s *source, off uint64) {
	if s.skip == nil || len(s.skip) >= 4096 {
		s.skip = map[uint64]struct{}{}
	}
	s.skip[off] = struct{}{}
}
