package pipeline

import (
	"iter"
	"slices"
)

// small is a map for the few keys a Stream has of each kind (its Loki
// streams, and the labels leading to them: one per level, usually): a
// slice searched in order up to smallMax keys, a map beyond. A Go map
// costs a few hundred bytes even with four keys, and a Stream had four of
// them: with a thousand files open, over a MB. The zero value is empty.
type small[K comparable, V any] struct {
	keys []K
	vals []V
	m    map[K]V // nil until more than smallMax keys
}

const smallMax = 16

func (s *small[K, V]) get(k K) (V, bool) {
	if s.m != nil {
		v, ok := s.m[k]
		return v, ok
	}
	for i := range s.keys {
		if s.keys[i] == k {
			return s.vals[i], true
		}
	}
	var zero V
	return zero, false
}

// put sets k's value.
func (s *small[K, V]) put(k K, v V) {
	if s.m != nil {
		s.m[k] = v
		return
	}
	for i := range s.keys {
		if s.keys[i] == k {
			s.vals[i] = v
			return
		}
	}
	if len(s.keys) == smallMax {
		s.m = make(map[K]V, 2*smallMax)
		for i := range s.keys {
			s.m[s.keys[i]] = s.vals[i]
		}
		s.m[k] = v
		s.keys, s.vals = nil, nil
		return
	}
	s.keys = append(s.keys, k)
	s.vals = append(s.vals, v)
}

func (s *small[K, V]) del(k K) {
	if s.m != nil {
		delete(s.m, k)
		return
	}
	if i := slices.Index(s.keys, k); i >= 0 {
		s.keys = slices.Delete(s.keys, i, i+1) // zeroes the slot let go
		s.vals = slices.Delete(s.vals, i, i+1)
	}
}

func (s *small[K, V]) len() int {
	if s.m != nil {
		return len(s.m)
	}
	return len(s.keys)
}

// all yields every key and value, in no set order.
func (s *small[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		if s.m != nil {
			for k, v := range s.m {
				if !yield(k, v) {
					return
				}
			}
			return
		}
		for i := range s.keys {
			if !yield(s.keys[i], s.vals[i]) {
				return
			}
		}
	}
}
