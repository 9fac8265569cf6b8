package journal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
)

// Byte offsets of the header fields, from struct Header in systemd's
// JOURNAL_FILE_FORMAT.md (checked against files written by journald 252,
// whose header_size is 264).
const (
	hdrSignature            = 0
	hdrCompatibleFlags      = 8
	hdrIncompatibleFlags    = 12
	hdrState                = 16
	hdrFileID               = 24
	hdrMachineID            = 40
	hdrTailEntryBootID      = 56
	hdrSeqnumID             = 72
	hdrHeaderSize           = 88
	hdrArenaSize            = 96
	hdrDataHashTableOffset  = 104
	hdrDataHashTableSize    = 112
	hdrFieldHashTableOffset = 120
	hdrFieldHashTableSize   = 128
	hdrTailObjectOffset     = 136
	hdrNObjects             = 144
	hdrNEntries             = 152
	hdrTailEntrySeqnum      = 160
	hdrHeadEntrySeqnum      = 168
	hdrEntryArrayOffset     = 176
	hdrHeadEntryRealtime    = 184
	hdrTailEntryRealtime    = 192
	hdrTailEntryMonotonic   = 200

	// minHeaderSize: every field up to n_data exists in all versions of the
	// format; later ones are only there when header_size covers them, and
	// this reader needs none of them.
	minHeaderSize = 208
)

const headerSignature = "LPKSHHRH"

// Incompatible header flags: a reader must refuse a file with a flag it
// does not know.
const (
	incompatCompressedXZ   = 1 << 0
	incompatCompressedLZ4  = 1 << 1
	incompatKeyedHash      = 1 << 2
	incompatCompressedZSTD = 1 << 3
	incompatCompact        = 1 << 4

	incompatKnown = incompatCompressedXZ | incompatCompressedLZ4 | incompatKeyedHash |
		incompatCompressedZSTD | incompatCompact
)

var incompatNames = [...]string{"COMPRESSED_XZ", "COMPRESSED_LZ4", "KEYED_HASH", "COMPRESSED_ZSTD", "COMPACT"}

// File states (header byte 16).
const (
	stateOffline  = 0
	stateOnline   = 1
	stateArchived = 2
)

// header holds the parts of a file header that never change once the file
// is created. Counters (n_entries, tail seqnum, state…) change while
// journald writes and are read from the mapping each time they are needed.
type header struct {
	incompat   uint32
	fileID     [16]byte
	seqnumID   [16]byte
	headerSize uint64
}

func (h *header) compact() bool { return h.incompat&incompatCompact != 0 }
func (h *header) keyed() bool   { return h.incompat&incompatKeyedHash != 0 }

// errNotReady marks a file journald has created but not yet initialised:
// it is skipped without complaint and looked at again on the next scan.
var errNotReady = fmt.Errorf("journal file not initialised yet")

// parseHeader checks the fixed part of a header. b is the start of the file,
// however long it is.
func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < minHeaderSize {
		return h, errNotReady
	}
	sig := b[hdrSignature : hdrSignature+8]
	if string(sig) != headerSignature {
		if bytes.Count(sig, []byte{0}) == len(sig) {
			return h, errNotReady
		}
		return h, fmt.Errorf("bad signature %q, want %q", sig, headerSignature)
	}
	h.incompat = binary.LittleEndian.Uint32(b[hdrIncompatibleFlags:])
	if unknown := h.incompat &^ incompatKnown; unknown != 0 {
		return h, fmt.Errorf("unsupported incompatible header flag(s) %s", flagBits(unknown))
	}
	h.headerSize = binary.LittleEndian.Uint64(b[hdrHeaderSize:])
	if h.headerSize < minHeaderSize || h.headerSize%8 != 0 {
		return h, fmt.Errorf("bad header_size %d", h.headerSize)
	}
	copy(h.fileID[:], b[hdrFileID:])
	copy(h.seqnumID[:], b[hdrSeqnumID:])
	return h, nil
}

// flagBits names each set bit, e.g. "0x20 (bit 5)".
func flagBits(v uint32) string {
	var parts []string
	for v != 0 {
		i := bits.TrailingZeros32(v)
		v &^= 1 << i
		name := fmt.Sprintf("bit %d", i)
		if i < len(incompatNames) {
			name = incompatNames[i]
		}
		parts = append(parts, fmt.Sprintf("%#x (%s)", uint32(1)<<i, name))
	}
	return strings.Join(parts, ", ")
}
