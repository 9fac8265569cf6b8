package sizepool

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sizes are first to first<<(classes-1), doubling; anything else is not
// pooled, and Get still returns a slice of the size asked.
func TestClassAndGet(t *testing.T) {
	p := New[byte](1<<10, 6, false)
	for c, want := range map[int]int{512: -1, 1 << 10: 0, 1536: -1, 2 << 10: 1, 16 << 10: 4, 32 << 10: 5, 64 << 10: -1, 3000: -1} {
		if got := p.Class(c); got != want {
			t.Errorf("Class(%d) = %d, want %d", c, got, want)
		}
	}
	if s := p.Get(3000); cap(s) != 3000 || len(s) != 0 {
		t.Errorf("Get(3000): len %d cap %d", len(s), cap(s))
	}
}

// A clearing pool zeroes what was in use before keeping it: what Get hands
// out again holds no old pointers.
func TestPutClears(t *testing.T) {
	p := New[*int](64, 4, true)
	s := p.Get(64)
	x := 1
	s = append(s, &x, &x)
	p.Put(s)
	if s[:2][0] != nil || s[:2][1] != nil {
		t.Fatal("Put left pointers in the array")
	}
}

// Chunks come from slabs outside the heap and go back to them: a chunk is
// handed out once until it is given back, every size from one slab's worth
// of chunks, and the bytes in use follow Get and Put.
func TestBytesGetPut(t *testing.T) {
	p := NewBytes(1<<10, 6, time.Hour)
	seen := map[*byte]bool{}
	var out [][]byte
	for _, size := range []int{1 << 10, 2 << 10, 32 << 10} {
		for range 3 * SlabSize / size { // three slabs' worth
			b := p.Get(size)
			if len(b) != 0 || cap(b) != size {
				t.Fatalf("Get(%d): len %d cap %d", size, len(b), cap(b))
			}
			b = append(b, make([]byte, size)...) // within its capacity
			if seen[&b[0]] {
				t.Fatalf("Get(%d) handed out a chunk that is out", size)
			}
			seen[&b[0]] = true
			out = append(out, b)
		}
	}
	if in, res := p.Stats(); in != 3*3*SlabSize || res != 9*SlabSize {
		t.Fatalf("in use %d, resident %d; want %d, %d", in, res, 9*SlabSize, 9*SlabSize)
	}
	for _, b := range out {
		p.Put(b)
	}
	if in, res := p.Stats(); in != 0 || res != 9*SlabSize {
		t.Fatalf("after Put: in use %d, resident %d; want 0, %d (idle, kept)", in, res, 9*SlabSize)
	}
	// Idle slabs serve any size again.
	b := p.Get(4 << 10)
	if _, res := p.Stats(); res != 9*SlabSize {
		t.Fatalf("Get after Put mapped more: resident %d", res)
	}
	p.Put(b)
}

// Other slices are not the pool's: Put leaves them alone, and a chunk given
// back twice is a bug that would hand one chunk to two users.
func TestBytesForeignAndTwice(t *testing.T) {
	p := NewBytes(1<<10, 6, time.Hour)
	if b := p.Get(3000); cap(b) != 3000 {
		t.Fatalf("Get(3000): cap %d", cap(b))
	}
	p.Put(make([]byte, 0, 1<<10)) // a heap slice of a pooled size
	p.Put(make([]byte, 0, 3000))
	if in, _ := p.Stats(); in != 0 {
		t.Fatalf("foreign Put changed in use: %d", in)
	}
	b := p.Get(1 << 10)
	p.Put(b)
	defer func() {
		if recover() == nil {
			t.Fatal("second Put of a chunk did not panic")
		}
	}()
	p.Put(b)
}

// Slabs idle for the keep time go back to the kernel; memory in use stays.
// Checked in the process's own resident set, not only the pool's count.
func TestBytesTrimReturnsMemory(t *testing.T) {
	p := NewBytes(1<<10, 6, 50*time.Millisecond)
	const n = 512 // 16 MiB
	var out [][]byte
	for range n {
		b := p.Get(32 << 10)
		out = append(out, b[:32<<10])
		clear(out[len(out)-1]) // touch every page
	}
	before := rssAnon(t)
	keep := p.Get(32 << 10) // still out after the trim
	for _, b := range out {
		p.Put(b)
	}
	time.Sleep(60 * time.Millisecond)
	p.Trim()
	if _, res := p.Stats(); res != SlabSize {
		t.Fatalf("resident after trim: %d, want %d (the chunk still out)", res, SlabSize)
	}
	if after := rssAnon(t); before-after < 12<<20 {
		t.Fatalf("anonymous resident memory %d → %d: the 16 MiB trimmed did not go back", before, after)
	}
	p.Put(keep)
}

func rssAnon(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skip("no RssAnon in /proc/self/status")
	return 0
}
