package journal

import (
	"encoding/binary"
	"math/bits"
)

// The data and field hash tables of a journal file are keyed by one of two
// 64-bit hashes of the payload: Bob Jenkins' lookup3 hashlittle2 (older
// files, and always for an entry's xor_hash), or SipHash-2-4 keyed by the
// file's file_id when the header has HEADER_INCOMPATIBLE_KEYED_HASH. Both are
// written here from their public descriptions (lookup3 is public domain,
// SipHash is from Aumasson and Bernstein's paper).

// jenkinsHash64 is lookup3's hashlittle2 with both seeds 0, the first result
// (c) in the high half and the second (b) in the low half, as the journal
// format documents.
func jenkinsHash64(p []byte) uint64 {
	a := 0xdeadbeef + uint32(len(p))
	b, c := a, a
	for len(p) > 12 {
		a += binary.LittleEndian.Uint32(p)
		b += binary.LittleEndian.Uint32(p[4:])
		c += binary.LittleEndian.Uint32(p[8:])
		a, b, c = lookup3Mix(a, b, c)
		p = p[12:]
	}
	if len(p) == 0 {
		// lookup3 returns without the final mix for an empty tail.
		return uint64(c)<<32 | uint64(b)
	}
	// The last 1..12 bytes are added little-endian, as if zero-padded.
	var tail [12]byte
	copy(tail[:], p)
	a += binary.LittleEndian.Uint32(tail[0:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	a, b, c = lookup3Final(a, b, c)
	return uint64(c)<<32 | uint64(b)
}

func lookup3Mix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func lookup3Final(a, b, c uint32) (uint32, uint32, uint32) {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return a, b, c
}

// sipHash24 is SipHash-2-4 of p under the 128-bit key k (read as two
// little-endian 64-bit words).
func sipHash24(k *[16]byte, p []byte) uint64 {
	k0 := binary.LittleEndian.Uint64(k[0:])
	k1 := binary.LittleEndian.Uint64(k[8:])
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	n := len(p)
	for len(p) >= 8 {
		m := binary.LittleEndian.Uint64(p)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
		p = p[8:]
	}
	var tail [8]byte
	copy(tail[:], p)
	m := binary.LittleEndian.Uint64(tail[:]) | uint64(n)<<56
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m
	v2 ^= 0xff
	for i := 0; i < 4; i++ {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
