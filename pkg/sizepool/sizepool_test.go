package sizepool

import "testing"

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
