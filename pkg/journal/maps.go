package journal

import (
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Maps shares the mappings of journal files between the Readers of one
// process. Every Reader of a container's output reads the same few live
// files, and a container's entries are spread over all of them, so with a
// mapping of its own per Reader each touched every page of each file: the
// pages are the page cache's, shared, but they count in the process's RSS
// once per mapping (200 journald containers' readers: 2.3 GB of "RSS" for
// ~25 MB of journal, make bench). Shared, a file is mapped once, at the
// largest size asked for; a smaller, older mapping of it goes when the last
// Reader holding it lets it go.
//
// The zero value is ready; a nil *Maps maps per Reader.
type Maps struct {
	mu     sync.Mutex
	newest map[fileKey]*mapping // the largest mapping of each file
	byAddr map[*byte]*mapping   // every mapping handed out, by its first byte
}

type mapping struct {
	key  fileKey
	m    []byte
	refs int
}

// get returns a mapping of at least size bytes of osf (key), shared with
// other Readers.
func (s *Maps) get(osf *os.File, key fileKey, size int64) ([]byte, error) {
	if s == nil {
		return mapFile(osf, size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if mp := s.newest[key]; mp != nil && int64(len(mp.m)) >= size {
		mp.refs++
		return mp.m, nil
	}
	m, err := mapFile(osf, size)
	if err != nil || m == nil {
		return m, err
	}
	if s.newest == nil {
		s.newest, s.byAddr = map[fileKey]*mapping{}, map[*byte]*mapping{}
	}
	mp := &mapping{key: key, m: m, refs: 1}
	s.newest[key] = mp
	s.byAddr[unsafe.SliceData(m)] = mp
	return m, nil
}

// put gives back a mapping get returned, unmapping it when no Reader holds
// it any more.
func (s *Maps) put(m []byte) {
	if s == nil || m == nil {
		_ = unmap(m)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mp := s.byAddr[unsafe.SliceData(m)]
	if mp == nil {
		_ = unmap(m) // not ours (cannot happen): do not leak it
		return
	}
	if mp.refs--; mp.refs > 0 {
		return
	}
	delete(s.byAddr, unsafe.SliceData(m))
	if s.newest[mp.key] == mp {
		delete(s.newest, mp.key)
	}
	_ = unmap(mp.m)
}

// Trim drops the pages of every mapping from the process's page tables
// (madvise MADV_DONTNEED): they stay in the page cache, journald's, and the
// next read of one faults it back in (a minor fault). Readers touch every
// page of the journal as they follow it, which otherwise stays counted in
// the process's RSS until the file is archived and let go: at full speed,
// ~250 MiB for 500,000 lines (make bench). Call it every second or so.
func (s *Maps) Trim() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, mp := range s.byAddr {
		_ = unix.Madvise(mp.m, unix.MADV_DONTNEED)
	}
}

// Len is the number of mappings held, for tests.
func (s *Maps) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byAddr)
}
