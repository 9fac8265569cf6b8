package journal

import (
	"encoding/binary"
	"fmt"
)

// Object types.
const (
	objData          = 1
	objField         = 2
	objEntry         = 3
	objDataHashTable = 4
	objEntryArray    = 6
)

// Object flags: the compression of a DATA payload. At most one is set.
const (
	objCompressedXZ   = 1 << 0
	objCompressedLZ4  = 1 << 1
	objCompressedZSTD = 1 << 2
	objCompressedMask = objCompressedXZ | objCompressedLZ4 | objCompressedZSTD
)

// Byte offsets inside objects, from JOURNAL_FILE_FORMAT.md. Every object
// starts with a 16-byte header: type, flags, 6 reserved bytes, le64 size
// (of the whole object, header included).
const (
	objHeaderSize = 16
	objType       = 0
	objFlags      = 1
	objSize       = 8

	dataHash             = 16
	dataNextHashOffset   = 24
	dataEntryOffset      = 40 // the first entry holding this data, stored inline
	dataEntryArrayOffset = 48 // entries 2..n_entries
	dataNEntries         = 56
	dataPayload          = 64 // regular files
	dataPayloadCompact   = 72 // compact files keep two le32 tail pointers first

	entrySeqnum    = 16
	entryRealtime  = 24
	entryMonotonic = 32
	entryBootID    = 40
	entryXorHash   = 56
	entryItems     = 64 // {le64 offset, le64 hash}, or {le32 offset} if compact

	arrayNext  = 16
	arrayItems = 24 // le64 offsets, or le32 if compact

	hashItemSize = 16 // {le64 head_hash_offset, le64 tail_hash_offset}
)

var objTypeNames = [...]string{"UNUSED", "DATA", "FIELD", "ENTRY", "DATA_HASH_TABLE",
	"FIELD_HASH_TABLE", "ENTRY_ARRAY", "TAG"}

func typeName(t uint8) string {
	if int(t) < len(objTypeNames) {
		return objTypeNames[t]
	}
	return fmt.Sprintf("type %d", t)
}

// minObjectSize is the smallest object of each type this reader accepts,
// so that fixed fields can be read without further checks.
func minObjectSizes(dataPayload uint64) [8]uint64 {
	m := [8]uint64{}
	for i := range m {
		m[i] = objHeaderSize
	}
	m[objData] = dataPayload
	m[objEntry] = entryItems
	m[objEntryArray] = arrayItems
	return m
}

// object returns the whole object at off after checking that it lies inside
// the file, is aligned, has type t and is at least as large as its fixed
// fields. Offsets come from a file another process writes, so each is
// checked before use. The common case, an object inside the mapping, takes
// the short way; objectSlow maps the file again or says what is wrong.
func (f *file) object(off uint64, t uint8) ([]byte, error) {
	m := f.m
	if off >= f.hdr.headerSize && off%8 == 0 && off < uint64(len(m)) && uint64(len(m))-off >= objHeaderSize {
		size := le64(m, int(off+objSize))
		if m[off+objType] == t && size >= f.minSize[t&7] && size <= uint64(len(m))-off {
			return m[off : off+size : off+size], nil
		}
	}
	return f.objectSlow(off, t)
}

func (f *file) objectSlow(off uint64, t uint8) ([]byte, error) {
	if off < f.hdr.headerSize || off%8 != 0 {
		return nil, f.errAt(off, "bad %s object offset", typeName(t))
	}
	if err := f.ensure(off, objHeaderSize); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint64(f.m[off+objSize:])
	if got := f.m[off+objType]; got != t {
		return nil, f.errAt(off, "object is %s, want %s", typeName(got), typeName(t))
	}
	if size < f.minSize[t&7] {
		return nil, f.errAt(off, "%s object size %d too small", typeName(t), size)
	}
	if err := f.ensure(off, size); err != nil {
		return nil, err
	}
	return f.m[off : off+size : off+size], nil
}

func le64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }
func le32(b []byte, off int) uint64 { return uint64(binary.LittleEndian.Uint32(b[off:])) }
