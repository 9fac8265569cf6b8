// Package sizepool keeps slices for reuse by capacity, from a first size
// up, doubling: Pool in one sync.Pool per capacity (a Stream's in-flight
// arrays), Bytes in memory outside the Go heap (the Loki client's batch
// chunks, which it gives back exactly when acknowledged).
package sizepool

import (
	"math/bits"
	"sync"
)

// Pool holds slices of capacities first, 2×first, … (classes of them).
type Pool[T any] struct {
	first int
	clear bool
	pools []sync.Pool
}

// New returns a Pool of classes capacities from first (a power of two) up.
// clear: Put zeroes the elements in use first (needed when T holds
// pointers, which would keep what they point to alive).
func New[T any](first, classes int, clear bool) *Pool[T] {
	return &Pool[T]{first: first, clear: clear, pools: make([]sync.Pool, classes)}
}

// Class is the index of capacity c among the pool's sizes, or -1 when c is
// not one of them.
func (p *Pool[T]) Class(c int) int { return class(p.first, len(p.pools), c) }

// class is the index of capacity c among classes capacities doubling from
// first, or -1.
func class(first, classes, c int) int {
	if c < first || c&(c-1) != 0 {
		return -1
	}
	if k := bits.TrailingZeros(uint(c)) - bits.TrailingZeros(uint(first)); k < classes {
		return k
	}
	return -1
}

// Get returns an empty slice of capacity size: a pooled one when size is
// one of the sizes and one is there, else a new one.
func (p *Pool[T]) Get(size int) []T {
	if k := p.Class(size); k >= 0 {
		if s, ok := p.pools[k].Get().(*[]T); ok {
			return (*s)[:0]
		}
	}
	return make([]T, 0, size)
}

// Put keeps s for a later Get of its capacity, if that is one of the sizes.
// Nothing may use s afterwards. Elements past len(s) must be zero already
// when the pool clears (they are in anything Get returned).
func (p *Pool[T]) Put(s []T) {
	k := p.Class(cap(s))
	if k < 0 {
		return
	}
	if p.clear {
		clear(s)
	}
	s = s[:0]
	p.pools[k].Put(&s)
}
