package sizepool

import (
	"fmt"
	"math/bits"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bytes keeps byte slices of capacities first, 2×first, … up to SlabSize
// outside the Go heap, in memory mapped from the kernel and never scanned or
// collected. It is for buffers whose lifetime the program tracks exactly,
// like the Loki client's queued entries: held from the read to the
// acknowledgement, then given back. On the heap, such a buffer costs twice
// its size, since the collector lets the heap grow to twice what is live
// before it collects: an 8 MiB queue was 16 MiB of a process's memory. Here
// it costs its pages.
//
// Memory comes in slabs of SlabSize, each split into chunks of one
// capacity while any of them is out; a slab whose chunks are all back is
// kept for any capacity, and returned to the kernel (madvise DONTNEED: the
// pages go, the addresses stay ours) once it has been unused for the keep
// time given to NewBytes. Nothing is ever unmapped, so a chunk used after
// Put reads whatever is there, as with any pool, but never faults.
type Bytes struct {
	first, classes int
	keep           time.Duration

	mu       sync.Mutex
	slabs    map[uintptr]*slab // by address
	avail    [][]*slab         // per class: slabs with a chunk free and one out
	idle     []*slab           // nothing out, pages resident: the oldest first
	released []*slab           // nothing out, pages returned to the kernel
	resident int64             // bytes of slabs in use or idle
	inUse    int64             // bytes of chunks out
	trimmed  time.Time         // last trim
}

// SlabSize is the unit of memory a Bytes maps and returns, and its largest
// chunk.
const SlabSize = 64 << 10

// region is how much address space a Bytes maps at once: touched only as
// slabs are used.
const region = 16 * SlabSize

type slab struct {
	mem   []byte
	class int       // -1 while nothing is out
	free  uint64    // chunk i is free when bit i is set
	at    int       // index in avail[class], -1 when not there
	since time.Time // when it went idle
}

// NewBytes returns a pool of classes capacities from first (a power of two)
// up, the largest at most SlabSize, and at least SlabSize/64 (a slab holds
// 64 chunks at most). Idle memory goes back to the kernel after keep.
func NewBytes(first, classes int, keep time.Duration) *Bytes {
	if first&(first-1) != 0 || first < SlabSize/64 || first<<(classes-1) > SlabSize {
		panic(fmt.Sprintf("sizepool: bad classes: %d from %d", classes, first))
	}
	return &Bytes{first: first, classes: classes, keep: keep, slabs: map[uintptr]*slab{}, avail: make([][]*slab, classes)}
}

// Class is the index of capacity c among the pool's sizes, or -1 when c is
// not one of them.
func (p *Bytes) Class(c int) int { return class(p.first, p.classes, c) }

// Get returns an empty slice of capacity size: a chunk when size is one of
// the sizes, else one made on the heap (which Put then ignores). It panics
// only when the kernel refuses memory.
func (p *Bytes) Get(size int) []byte {
	k := p.Class(size)
	if k < 0 {
		return make([]byte, 0, size)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var s *slab
	if l := p.avail[k]; len(l) > 0 {
		s = l[len(l)-1]
	} else {
		s = p.takeSlab(k)
	}
	i := bits.TrailingZeros64(s.free)
	s.free &^= 1 << i
	if s.free == 0 {
		p.unavail(s)
	}
	p.inUse += int64(size)
	return s.mem[i*size : i*size : (i+1)*size]
}

// takeSlab gives class k a slab with every chunk free, listed in avail.
func (p *Bytes) takeSlab(k int) *slab {
	var s *slab
	switch {
	case len(p.idle) > 0: // the most recently used: its pages are there
		s = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
	case len(p.released) > 0:
		s = p.released[len(p.released)-1]
		p.released = p.released[:len(p.released)-1]
		p.resident += SlabSize
	default:
		p.grow()
		s = p.released[len(p.released)-1]
		p.released = p.released[:len(p.released)-1]
		p.resident += SlabSize
	}
	n := SlabSize / (p.first << k)
	s.class = k
	s.free = ^uint64(0) >> (64 - n)
	s.at = len(p.avail[k])
	p.avail[k] = append(p.avail[k], s)
	return s
}

// grow maps a region and lists its slabs as released (untouched pages
// cost nothing).
func (p *Bytes) grow() {
	m, err := unix.Mmap(-1, 0, region+SlabSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		panic(fmt.Sprintf("sizepool: mapping %d bytes: %v", region+SlabSize, err))
	}
	// Slabs aligned to their size, so a chunk's address finds its slab.
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	off := int((base+SlabSize-1)&^(SlabSize-1) - base)
	for o := off + region - SlabSize; o >= off; o -= SlabSize {
		s := &slab{mem: m[o : o+SlabSize : o+SlabSize], class: -1, at: -1}
		p.slabs[base+uintptr(o)] = s
		p.released = append(p.released, s)
	}
}

// unavail takes s out of its class's avail list.
func (p *Bytes) unavail(s *slab) {
	l := p.avail[s.class]
	last := l[len(l)-1]
	l[s.at], last.at = last, s.at
	p.avail[s.class] = l[:len(l)-1]
	s.at = -1
}

// Put gives b back for a later Get of its capacity. Nothing may use b
// afterwards. Slices that are not this pool's chunks (made by Get for
// other sizes, or elsewhere) are left to the garbage collector. A chunk
// given back twice, or cut (b[i:]), panics: either would hand one chunk to
// two users.
func (p *Bytes) Put(b []byte) {
	k := p.Class(cap(b))
	if k < 0 {
		return
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	size := p.first << k
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.slabs[addr&^(SlabSize-1)]
	if s == nil {
		return
	}
	i := int(addr&(SlabSize-1)) / size
	if s.class != k || int(addr&(SlabSize-1))%size != 0 || s.free&(1<<i) != 0 {
		panic("sizepool: a chunk given back twice, or not as Get returned it")
	}
	if s.free == 0 {
		s.at = len(p.avail[k])
		p.avail[k] = append(p.avail[k], s)
	}
	s.free |= 1 << i
	p.inUse -= int64(size)
	if n := SlabSize / size; s.free == ^uint64(0)>>(64-n) {
		p.unavail(s)
		s.class = -1
		now := time.Now()
		s.since = now
		p.idle = append(p.idle, s)
		if now.Sub(p.trimmed) >= p.keep/4 {
			p.trim(now)
		}
	}
}

// Trim returns to the kernel the pages of slabs unused for the keep time.
// Put does it as slabs go idle; call it when none may.
func (p *Bytes) Trim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trim(time.Now())
}

func (p *Bytes) trim(now time.Time) {
	p.trimmed = now
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].since) >= p.keep {
		n++
	}
	for _, s := range p.idle[:n] {
		// Only fails for a range not mapped, or bad arguments: neither here.
		_ = unix.Madvise(s.mem, unix.MADV_DONTNEED)
		p.released = append(p.released, s)
		p.resident -= SlabSize
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
}

// Stats returns the bytes of the pool's memory in use (chunks out) and
// resident (slabs with chunks out, and idle ones not yet returned).
func (p *Bytes) Stats() (inUse, resident int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse, p.resident
}
