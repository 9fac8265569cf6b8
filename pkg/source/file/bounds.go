package file

import (
	"slices"
	"sync"
)

// The two bounds tailers share: OpenFiles bounds the descriptors of log
// files open at once, across directories; ReadSlots bounds, per tenant, the
// directories reading at once. A directory short of an open-file slot leaves
// the file for a later cycle; one short of a read slot queues for it.

// OpenFiles bounds the log files open at once, across directories.
type OpenFiles struct{ slots chan struct{} }

// NewOpenFiles allows n files open at once.
func NewOpenFiles(n int) *OpenFiles { return &OpenFiles{slots: make(chan struct{}, n)} }

// tryAcquire takes a slot if one is free. Nil OpenFiles: no bound.
func (o *OpenFiles) tryAcquire() bool {
	if o == nil {
		return true
	}
	select {
	case o.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (o *OpenFiles) release() {
	if o != nil {
		<-o.slots
	}
}

// ReadSlots bounds, per tenant, the directories reading at once. A reading
// directory holds a read buffer and the entries parsed from it, and while
// Loki pushes back it holds them until the sink takes them: with a thousand
// files in 500 directories all held back, that was 14 MB of a 44 MB live
// heap, for no gain, as the tenant's queue takes no more than a few
// readers' worth at a time. Per tenant, so a tenant Loki holds back keeps
// no other tenant from reading. A directory waiting for a slot is queued,
// and a slot given back goes to the first in line: no goroutine waits.
type ReadSlots struct {
	n       int
	mu      sync.Mutex
	tenants map[string]*tenantSlots
}

type tenantSlots struct {
	used  int
	queue []*slotWaiter
}

// slotWaiter is one wait for a slot: grant is called (under ReadSlots' lock:
// it must not block) when the slot is the waiter's; it gives it back with
// release.
type slotWaiter struct{ grant func() }

// NewReadSlots lets n directories of each tenant read at once.
func NewReadSlots(n int) *ReadSlots {
	return &ReadSlots{n: max(n, 1), tenants: map[string]*tenantSlots{}}
}

// tryAcquire takes one of tenant's slots if one is free; release gives it
// back. Nil ReadSlots: no bound.
func (rs *ReadSlots) tryAcquire(tenant string) bool {
	if rs == nil {
		return true
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.free(rs.of(tenant))
}

// free takes one of t's slots if one is free. rs.mu must be held.
func (rs *ReadSlots) free(t *tenantSlots) bool {
	if t.used == rs.n {
		return false
	}
	t.used++
	return true
}

// of returns tenant's slots. rs.mu must be held.
func (rs *ReadSlots) of(tenant string) *tenantSlots {
	t := rs.tenants[tenant]
	if t == nil {
		t = &tenantSlots{}
		rs.tenants[tenant] = t
	}
	return t
}

// release gives a slot of tenant back, to the first waiter if any.
func (rs *ReadSlots) release(tenant string) {
	if rs == nil {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	t := rs.of(tenant)
	if len(t.queue) > 0 {
		w := t.queue[0]
		t.queue[0] = nil
		t.queue = t.queue[1:]
		w.grant() // the slot changes hands
		return
	}
	t.used--
}

// wait queues w for one of tenant's slots; w.grant is called when it has
// one, at once if one is free. Nil ReadSlots: granted at once.
func (rs *ReadSlots) wait(tenant string, w *slotWaiter) {
	if rs == nil {
		w.grant()
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	t := rs.of(tenant)
	if rs.free(t) {
		w.grant()
		return
	}
	t.queue = append(t.queue, w)
}

// cancel takes w out of tenant's queue. It reports false when w is not in
// it: granted already (its grant has returned), or never queued.
func (rs *ReadSlots) cancel(tenant string, w *slotWaiter) bool {
	if rs == nil {
		return false
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	t := rs.of(tenant)
	for i, q := range t.queue {
		if q == w {
			t.queue = slices.Delete(t.queue, i, i+1)
			return true
		}
	}
	return false
}
