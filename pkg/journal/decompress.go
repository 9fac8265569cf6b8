package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// maxPayload bounds a decompressed DATA payload, so that a corrupt or
// hostile object cannot make the reader allocate without limit. journald
// stores far smaller fields (its own limits are well below this for
// anything a container prints).
const maxPayload = 64 << 20

var errTooLarge = fmt.Errorf("decompressed payload larger than %d bytes", maxPayload)

// decoder decompresses DATA payloads. journald compresses a payload larger
// than its Compress= threshold (512 bytes by default) with the algorithm it
// was built for: ZSTD on current distributions, LZ4 or XZ on older ones.
type decoder struct {
	zstd *zstd.Decoder // made on first use
}

// decompress appends the payload compressed with the algorithm named by
// flags (one of objCompressed*) to dst.
func (d *decoder) decompress(flags uint8, src, dst []byte) ([]byte, error) {
	switch flags {
	case objCompressedZSTD:
		return d.zstdDecode(src, dst)
	case objCompressedLZ4:
		return lz4Decode(src, dst)
	case objCompressedXZ:
		return xzDecode(src, dst)
	}
	return dst, fmt.Errorf("unknown compression flags %#x", flags)
}

func (d *decoder) zstdDecode(src, dst []byte) ([]byte, error) {
	if d.zstd == nil {
		z, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(maxPayload), zstd.WithDecoderMaxWindow(maxPayload))
		if err != nil {
			return dst, err
		}
		d.zstd = z
	}
	out, err := d.zstd.DecodeAll(src, dst)
	if err != nil {
		return dst, fmt.Errorf("zstd: %w", err)
	}
	return out, nil
}

// lz4Decode reads journald's LZ4 form: the le64 uncompressed size, then one
// LZ4 block (not an LZ4 frame).
func lz4Decode(src, dst []byte) ([]byte, error) {
	if len(src) < 8 {
		return dst, errors.New("lz4: payload shorter than its size prefix")
	}
	size := binary.LittleEndian.Uint64(src)
	if size > maxPayload {
		return dst, errTooLarge
	}
	start := len(dst)
	dst = grow(dst, int(size))
	n, err := lz4.UncompressBlock(src[8:], dst[start:])
	if err != nil {
		return dst[:start], fmt.Errorf("lz4: %w", err)
	}
	if n != int(size) {
		return dst[:start], fmt.Errorf("lz4: %d bytes decompressed, prefix says %d", n, size)
	}
	return dst, nil
}

// xzDecode reads one XZ stream. XZ is the oldest journal compression and
// rare now, so it is not tuned.
func xzDecode(src, dst []byte) ([]byte, error) {
	r, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(src))
	if err != nil {
		return dst, fmt.Errorf("xz: %w", err)
	}
	buf := bytes.NewBuffer(dst)
	n, err := io.Copy(buf, io.LimitReader(r, maxPayload+1))
	if err != nil {
		return dst, fmt.Errorf("xz: %w", err)
	}
	if n > maxPayload {
		return dst, errTooLarge
	}
	return buf.Bytes(), nil
}

// grow extends dst by n bytes, reallocating if needed.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), 2*cap(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	return dst[:len(dst)+n]
}

func (d *decoder) close() {
	if d.zstd != nil {
		d.zstd.Close()
		d.zstd = nil
	}
}
