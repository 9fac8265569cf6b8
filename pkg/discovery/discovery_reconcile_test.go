package discovery_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/discovery"
)

// A container that disappears without an event (missed while the stream
// lagged) leaves the set at the next reconcile; one that appears without an
// event joins it.
func TestDiscovererReconcileCatchesMissedEvents(t *testing.T) {
	api := newFakeAPI(labelled("c1", "acme", true, before), labelled("c2", "acme", true, before))
	f := start(t, api, 20*time.Millisecond)
	if got := ids(f.next()); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("first set = %v", got)
	}
	api.remove("c1")
	api.set(labelled("c3", "acme", true, after))
	f.waitFor("c1 gone and c3 added", func(m map[string]discovery.Target) bool {
		_, c1 := m["c1"]
		_, c3 := m["c3"]
		return !c1 && c3 && len(m) == 2
	})
	api.set(labelled("c2", "acme", false, before)) // stopped, event missed
	f.waitFor("c2 stopped", func(m map[string]discovery.Target) bool { return !m["c2"].Running })
}

// Reconciles do not inspect containers again whose listed state has not
// changed, targets or skipped ones alike.
func TestDiscovererReconcileInspectsOnlyChanges(t *testing.T) {
	api := newFakeAPI(labelled("c1", "acme", true, before), labelled("untenanted", "", true, before))
	f := start(t, api, 10*time.Millisecond)
	f.next()
	eventually(t, "three more reconciles", func() bool { return api.count("list") >= 4 })
	if n, m := api.count("inspect c1"), api.count("inspect untenanted"); n != 1 || m != 1 {
		t.Errorf("inspected c1 %d and untenanted %d times over %d lists, want once each", n, m, api.count("list"))
	}
}

// A labelled container that was created but never started (zero StartedAt)
// is not inspected again by every reconcile while its listed state stays
// the same.
func TestDiscovererReconcileDoesNotReinspectCreated(t *testing.T) {
	// was skipped: bug fixed
	created := labelled("created", "acme", false, time.Time{})
	created.State = "created"
	api := newFakeAPI(created)
	f := start(t, api, 10*time.Millisecond)
	f.next()
	eventually(t, "three more reconciles", func() bool { return api.count("list") >= 4 })
	if n := api.count("inspect created"); n != 1 {
		t.Errorf("never-started container inspected %d times over %d lists, want once", n, api.count("list"))
	}
}

// When the event stream fails, Connected turns false until a new
// subscription is accepted; then the state is listed again (changes made
// meanwhile appear) and Connected is true again.
func TestDiscovererReconnects(t *testing.T) {
	api := newFakeAPI(labelled("c1", "acme", true, before))
	f := start(t, api, time.Hour)
	f.next()
	eventually(t, "Connected", f.d.Connected)

	gate := api.holdSubscriptions()
	f.sess.fail <- errors.New("connection reset")
	f.sess = api.nextSession(t) // the reconnect, held before subscribing
	if f.d.Connected() {
		t.Fatal("Connected() = true after the event stream failed")
	}
	lists := api.count("list")
	api.remove("c1")
	api.set(labelled("c2", "acme", true, after))
	close(gate)
	set := f.waitFor("the re-listed state", func(m map[string]discovery.Target) bool {
		_, c1 := m["c1"]
		_, c2 := m["c2"]
		return !c1 && c2
	})
	if len(set) != 1 {
		t.Errorf("set after reconnect = %v, want only c2", set)
	}
	eventually(t, "Connected again", f.d.Connected)
	if api.count("list") <= lists {
		t.Error("no List after reconnecting")
	}
	// The new subscription delivers events.
	api.set(labelled("c3", "acme", true, after))
	f.sess.send(t, "start", "c3")
	f.waitFor("c3 added", func(m map[string]discovery.Target) bool { _, ok := m["c3"]; return ok })
}
