package journal

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"
	"unsafe"
)

// file is one open journal file, mapped read-only. journald only ever
// grows a file (it never truncates one), so a mapping stays valid; when an
// offset lies beyond it the file is mapped again at its new size. Replaced
// mappings are not unmapped at once: entry values handed out by Next may
// still point into them, so they go to retire and are released at the start
// of the next Next call.
type file struct {
	path string
	osf  *os.File // nil for an in-memory file (tests, fuzzing)
	key  fileKey
	m    []byte
	hdr  header

	dataPayload   uint64    // offset of the payload in a DATA object
	arrayItemSize uint64    // size of an ENTRY_ARRAY item
	entryItemSize uint64    // size of an ENTRY item
	minSize       [8]uint64 // smallest valid object of each type

	retire *[][]byte
	maps   *Maps // nil: the mappings are this Reader's own
}

var bigEndian = binary.NativeEndian.Uint16([]byte{0, 1}) == 1

// openFile opens and maps path. errNotReady means journald is still
// creating it.
func openFile(path string, retire *[][]byte, maps *Maps) (*file, error) {
	osf, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, err
	}
	if fi.Size() < minHeaderSize {
		osf.Close()
		return nil, errNotReady
	}
	m, err := maps.get(osf, keyOf(fi), fi.Size())
	if err != nil {
		osf.Close()
		return nil, &FileError{Path: path, Err: fmt.Errorf("mmap: %w", err)}
	}
	f := &file{path: path, osf: osf, key: keyOf(fi), m: m, retire: retire, maps: maps}
	if err := f.init(); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// newMemFile reads a journal held in memory; it never grows.
func newMemFile(path string, b []byte) (*file, error) {
	// A fresh allocation is 8-byte aligned, which the atomic counter loads need.
	m := make([]byte, len(b))
	copy(m, b)
	var retire [][]byte
	f := &file{path: path, m: m, retire: &retire}
	return f, f.init()
}

func (f *file) init() error {
	h, err := parseHeader(f.m)
	if err == errNotReady {
		return err
	}
	if err != nil {
		return &FileError{Path: f.path, Err: err}
	}
	if uint64(len(f.m)) < h.headerSize {
		return errNotReady
	}
	f.hdr = h
	f.dataPayload, f.arrayItemSize, f.entryItemSize = dataPayload, 8, 16
	if h.compact() {
		f.dataPayload, f.arrayItemSize, f.entryItemSize = dataPayloadCompact, 4, 4
	}
	f.minSize = minObjectSizes(f.dataPayload)
	return nil
}

// ensure makes sure bytes [off, off+n) are mapped, mapping the file again
// if it has grown.
func (f *file) ensure(off, n uint64) error {
	end := off + n
	if end < off {
		return f.errAt(off, "object size %d overflows", n)
	}
	if end <= uint64(len(f.m)) {
		return nil
	}
	if err := f.remap(); err != nil {
		return err
	}
	if end <= uint64(len(f.m)) {
		return nil
	}
	return f.errAt(off, "object ends at %#x, beyond the end of the file (%#x)", end, len(f.m))
}

func (f *file) remap() error {
	if f.osf == nil {
		return nil
	}
	fi, err := f.osf.Stat()
	if err != nil {
		return &FileError{Path: f.path, Err: err}
	}
	if fi.Size() <= int64(len(f.m)) {
		return nil
	}
	m, err := f.maps.get(f.osf, f.key, fi.Size())
	if err != nil {
		return &FileError{Path: f.path, Err: fmt.Errorf("mmap: %w", err)}
	}
	*f.retire = append(*f.retire, f.m)
	f.m = m
	return nil
}

func (f *file) close() {
	if f.osf != nil {
		*f.retire = append(*f.retire, f.m)
		f.osf.Close()
		f.osf = nil
	}
	f.m = nil
}

// counter loads a le64 that journald updates in place (n_entries), with
// acquire ordering: what it counts was written before it was raised.
func (f *file) counter(off uint64) uint64 {
	v := atomic.LoadUint64((*uint64)(unsafe.Pointer(&f.m[off])))
	if bigEndian {
		v = bits.ReverseBytes64(v)
	}
	return v
}

// The header is always mapped (init checked header_size).
func (f *file) state() uint8           { return f.m[hdrState] }
func (f *file) nEntries() uint64       { return f.counter(hdrNEntries) }
func (f *file) headSeqnum() uint64     { return le64(f.m, hdrHeadEntrySeqnum) }
func (f *file) tailSeqnum() uint64     { return le64(f.m, hdrTailEntrySeqnum) }
func (f *file) headRealtime() uint64   { return le64(f.m, hdrHeadEntryRealtime) }
func (f *file) entryArrayHead() uint64 { return le64(f.m, hdrEntryArrayOffset) }

// hash is the data hash function of this file.
func (f *file) hash(p []byte) uint64 {
	if f.hdr.keyed() {
		return sipHash24(&f.hdr.fileID, p)
	}
	return jenkinsHash64(p)
}
