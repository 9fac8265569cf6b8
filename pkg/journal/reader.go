package journal

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

// Options says which journal files to read and which of their entries.
type Options struct {
	// Dirs are journal roots such as /run/log/journal and /var/log/journal:
	// each is searched for *.journal (and *.journal~) files directly and in
	// its subdirectories one level down (the machine-id directories). A root
	// that does not exist is skipped; one that cannot be read is an error
	// naming it.
	Dirs []string
	// Match, "FIELD=value" (e.g. "CONTAINER_ID_FULL=<64 hex>"), selects the
	// entries holding that data. They are found through each file's data
	// hash table and the DATA object's list of entries, not by scanning every
	// entry. Empty: every entry.
	Match string
	// After resumes after this entry: by seqnum in files numbered by the
	// same journald (same SeqnumID), by realtime in others. Zero: from the
	// oldest entry held.
	After Cursor
	// Fields, if not empty, are the only fields Entry.Field returns; others
	// are skipped without being decompressed where that can be told cheaply.
	Fields []string
	// Maps, if not nil, shares file mappings with the other Readers given
	// the same Maps (one per process): see Maps.
	Maps *Maps
}

// Reader reads the entries of the journal files under Options.Dirs in
// order, following them as journald writes, rotates and deletes them. A
// Reader is not safe for concurrent use.
type Reader struct {
	dirs   []string
	match  []byte
	wanted []string
	after  Cursor

	sources   []*source
	byKey     map[fileKey]*source
	fileIDs   map[[16]byte]struct{} // every file opened, kept once it is closed
	donePaths map[string]fileKey    // files read to the end or refused: not opened again
	seen      map[fileKey]bool      // scratch for scan
	heap      []*source             // sources with a candidate, least first
	groups    map[[16]byte]*group
	nextOrder uint64

	gaps      uint64
	pending   []error         // errors still to return from Next, one per call
	dirErrors map[string]bool // unreadable directories already reported
	scanBlind bool            // the last scan could not list every directory

	retired [][]byte // mappings to release at the start of the next Next
	maps    *Maps
	dec     decoder
	scratch []byte
	cur     *source   // the source being read, blamed for a fault
	tmp     []*source // scratch

	last      Cursor
	delivered bool
	closed    bool
}

var errClosed = errors.New("journal: reader closed")

// newReader is a Reader of o with no file open yet.
func newReader(o Options) *Reader {
	r := &Reader{
		dirs:      slices.Clone(o.Dirs),
		maps:      o.Maps,
		after:     o.After,
		byKey:     map[fileKey]*source{},
		fileIDs:   map[[16]byte]struct{}{},
		donePaths: map[string]fileKey{},
		seen:      map[fileKey]bool{},
		groups:    map[[16]byte]*group{},
		dirErrors: map[string]bool{},
	}
	if o.Match != "" {
		r.match = []byte(o.Match)
	}
	if len(o.Fields) > 0 {
		r.wanted = slices.Clone(o.Fields)
	}
	return r
}

// Open scans Options.Dirs and returns a Reader positioned after
// Options.After. Problems with single files are not errors here: such a
// file is skipped and its error returned once by Next.
func Open(o Options) (*Reader, error) {
	if len(o.Dirs) == 0 {
		return nil, errors.New("journal: no directories to read")
	}
	if o.Match != "" {
		if name, _, ok := strings.Cut(o.Match, "="); !ok || name == "" {
			return nil, fmt.Errorf("journal: match %q is not FIELD=value", o.Match)
		}
	}
	r := newReader(o)
	var err error
	r.guard(&err, func() error { return r.scan(true) })
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Next fills e with the next entry and reports true, or reports false when
// there is none now: the caller waits for the journal to change (see
// Watcher) and calls again. It never blocks.
//
// A non-nil error names a file or entry that was skipped (corrupt,
// truncated, refused); the Reader stays usable and Next should be called
// again.
func (r *Reader) Next(e *Entry) (ok bool, err error) {
	if r.closed {
		return false, errClosed
	}
	r.release()
	r.guard(&err, func() error {
		ok, err = r.next(e)
		return err
	})
	return ok && err == nil, err
}

func (r *Reader) next(e *Entry) (bool, error) {
	for {
		if len(r.pending) > 0 {
			err := r.pending[0]
			r.pending = r.pending[1:]
			return false, err
		}
		if len(r.heap) == 0 {
			if err := r.refill(); err != nil {
				return false, err
			}
			if len(r.heap) == 0 && len(r.pending) == 0 {
				return false, nil
			}
			continue
		}
		s := r.heap[0]
		r.cur = s
		err := r.fill(s, e)
		s.advance()
		r.requeue(s)
		r.cur = nil
		if err != nil {
			return false, asFileError(s.f, err) // this entry is skipped
		}
		// The same entry in two files (a copy) is delivered once.
		if r.delivered && e.Cursor == r.last {
			continue
		}
		r.last, r.delivered = e.Cursor, true
		return true, nil
	}
}

// refill looks for candidates in the files that had none, newest file
// first: an older file of a journald is finished by the time its successor
// gets entries, so looking at the successor first cannot see its entries
// before the last ones of its predecessor. If still none, the directories
// are scanned for new files.
func (r *Reader) refill() error {
	r.refresh()
	if len(r.heap) > 0 {
		return nil
	}
	if err := r.scan(false); err != nil {
		return err
	}
	r.refresh()
	return nil
}

func (r *Reader) refresh() {
	slices.SortFunc(r.sources, func(a, b *source) int {
		return compareNewest(a.f.headSeqnum(), b.f.headSeqnum())
	})
	r.tmp = append(r.tmp[:0], r.sources...)
	for _, s := range r.tmp {
		if s.heapIdx >= 0 {
			continue
		}
		// Read the state before the count: if it says journald is done with
		// the file, the count read after it is final.
		final := s.gone || s.f.state() == stateArchived
		r.cur = s
		ok, err := s.peek(r)
		r.cur = nil
		switch {
		case err != nil:
			r.drop(s, err)
		case ok:
			r.heapPush(s)
		case final:
			r.retire(s)
		}
	}
}

// compareNewest orders head seqnums newest first; 0 (no entry yet) is newest.
func compareNewest(a, b uint64) int {
	a, b = a-1, b-1 // 0 wraps to the largest
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// requeue puts s back in the heap after its candidate was taken.
func (r *Reader) requeue(s *source) {
	ok, err := s.peek(r)
	if ok && err == nil {
		r.heapFix(s.heapIdx)
		return
	}
	r.heapRemove(s.heapIdx)
	if err != nil {
		r.drop(s, err)
	}
}

// Gaps returns, and resets, the number of journal entries known to have
// been skipped because the files holding them were gone (vacuumed) before
// they could be read, whether or not they matched.
func (r *Reader) Gaps() uint64 {
	g := r.gaps
	r.gaps = 0
	return g
}

// Close releases every file. Entries filled by Next become invalid.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	for _, s := range r.sources {
		s.f.close()
	}
	r.sources, r.heap = nil, nil
	r.release()
	r.dec.close()
	return nil
}

// release unmaps the mappings retired since the last call: no entry handed
// out points into them any more.
func (r *Reader) release() {
	for i, m := range r.retired {
		r.maps.put(m)
		r.retired[i] = nil
	}
	r.retired = r.retired[:0]
}

// retire closes a source that is read to its end and will not grow.
func (r *Reader) retire(s *source) {
	r.donePaths[s.f.path] = s.f.key
	r.remove(s)
}

// drop closes a source after an error and queues the error.
func (r *Reader) drop(s *source, err error) {
	r.pending = append(r.pending, asFileError(s.f, err))
	r.retire(s)
}

func (r *Reader) remove(s *source) {
	if s.heapIdx >= 0 {
		r.heapRemove(s.heapIdx)
	}
	if i := slices.Index(r.sources, s); i >= 0 {
		r.sources = slices.Delete(r.sources, i, i+1)
	}
	delete(r.byKey, s.f.key)
	s.f.close()
}

func asFileError(f *file, err error) error {
	var fe *FileError
	if errors.As(err, &fe) {
		return err
	}
	return &FileError{Path: f.path, Err: err}
}

// guard runs fn, turning a runtime fault into an error. The files are
// mapped: were one truncated under the reader (journald never does, but
// another program or a full tmpfs could), touching the lost pages faults,
// and a corrupt file might hit a check this reader lacks. The source being
// read when it happens is dropped.
func (r *Reader) guard(errp *error, fn func() error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		rerr, ok := p.(runtime.Error)
		if !ok {
			panic(p)
		}
		err := fmt.Errorf("journal: reading failed: %w", rerr)
		if s := r.cur; s != nil {
			r.cur = nil
			err = &FileError{Path: s.f.path, Err: err}
			r.donePaths[s.f.path] = s.f.key
			r.remove(s)
		}
		*errp = err
	}()
	*errp = fn()
}
