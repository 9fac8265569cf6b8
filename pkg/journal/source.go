package journal

import (
	"bytes"
)

// source is the Reader's position in one file: the list it walks (all
// entries, or those of the Match's DATA object) and the next entry it would
// deliver (the candidate), which the merge across files compares.
type source struct {
	f     *file
	ch    chain
	order uint64 // opening order: the last tie-break between files
	group *group

	positioned bool   // the position is past Options.After
	matchHash  uint64 // hash of Options.Match under this file's hash function

	cand    uint64 // offset of the candidate ENTRY; 0: none now
	candSeq uint64
	candRT  uint64

	gone    bool // not found by the last directory scan (deleted or moved away)
	heapIdx int  // index in Reader.heap, -1 when not there

	// skip holds compressed DATA objects known to hold a field that
	// Options.Fields leaves out, so they are not decompressed again.
	skip map[uint64]struct{}
}

// peek finds the candidate, if the file holds one now.
func (s *source) peek(r *Reader) (bool, error) {
	if s.cand != 0 {
		return true, nil
	}
	if r.match != nil && s.ch.data == 0 {
		off, err := s.lookupData(r)
		if off == 0 || err != nil {
			return false, err
		}
		s.ch = chain{data: off}
	}
	if !s.positioned {
		found, err := s.ch.seek(s.f, s.isAfter(r))
		if !found || err != nil {
			return false, err
		}
		s.positioned = true
	}
	for {
		off, ok, err := s.ch.peek(s.f)
		if !ok || err != nil {
			return false, err
		}
		obj, err := s.f.object(off, objEntry)
		if err != nil {
			// The list is sound but this item is not: skip the item, not
			// the file.
			r.pending = append(r.pending, asFileError(s.f, err))
			s.ch.advance()
			continue
		}
		s.cand, s.candSeq, s.candRT = off, le64(obj, entrySeqnum), le64(obj, entryRealtime)
		return true, nil
	}
}

// advance moves past the candidate.
func (s *source) advance() {
	s.cand = 0
	s.ch.advance()
}

// isAfter tells whether an entry comes after Options.After: by seqnum if
// this file was numbered by the same journald, by realtime otherwise.
func (s *source) isAfter(r *Reader) func(off uint64) (bool, error) {
	after := r.after
	same := s.f.hdr.seqnumID == after.SeqnumID
	return func(off uint64) (bool, error) {
		if after.IsZero() {
			return true, nil
		}
		obj, err := s.f.object(off, objEntry)
		if err != nil {
			return false, err
		}
		if same {
			return le64(obj, entrySeqnum) > after.Seqnum, nil
		}
		return le64(obj, entryRealtime) > after.Realtime, nil
	}
}

// lookupData finds the DATA object whose payload is Options.Match through
// the file's data hash table: bucket hash % buckets, then the chain of
// next_hash_offset. 0 if the file does not hold it (yet).
func (s *source) lookupData(r *Reader) (uint64, error) {
	f := s.f
	htOff, htSize := le64(f.m, hdrDataHashTableOffset), le64(f.m, hdrDataHashTableSize)
	if htOff == 0 || htSize < hashItemSize {
		return 0, nil // journald has not set the table up yet
	}
	if htOff < f.hdr.headerSize+objHeaderSize || htOff%8 != 0 || htSize%hashItemSize != 0 {
		return 0, f.errAt(htOff, "bad data hash table (size %d)", htSize)
	}
	if err := f.ensure(htOff, htSize); err != nil {
		return 0, err
	}
	bucket := s.matchHash % (htSize / hashItemSize)
	off := le64(f.m, int(htOff+bucket*hashItemSize))
	// A chain cannot hold more DATA objects than fit in the file; a longer
	// walk is a loop.
	limit := uint64(len(f.m)) / dataPayload
	for steps := uint64(0); off != 0; steps++ {
		if steps > limit {
			return 0, f.errAt(off, "data hash chain loops")
		}
		d, err := f.object(off, objData)
		if err != nil {
			return 0, err
		}
		if le64(d, dataHash) == s.matchHash {
			eq, err := r.payloadEqual(f, d, r.match)
			if err != nil {
				return 0, f.errAt(off, "%v", err)
			}
			if eq {
				return off, nil
			}
		}
		off = le64(d, dataNextHashOffset)
	}
	return 0, nil
}

// payloadEqual compares the payload of DATA object d with p.
func (r *Reader) payloadEqual(f *file, d, p []byte) (bool, error) {
	payload := d[f.dataPayload:]
	comp := d[objFlags] & objCompressedMask
	if comp == 0 {
		return bytes.Equal(payload, p), nil
	}
	var err error
	r.scratch, err = r.dec.decompress(comp, payload, r.scratch[:0])
	return bytes.Equal(r.scratch, p), err
}
