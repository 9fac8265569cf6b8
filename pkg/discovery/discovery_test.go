package discovery_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/podman"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLimit = 10 * time.Second

var (
	podtailStart = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	before       = podtailStart.Add(-time.Hour)
	after        = podtailStart.Add(time.Minute)
)

// labelled is a k8s-file container with a tenant label; tenant "" leaves
// the label out.
func labelled(id, tenant string, running bool, started time.Time) podman.Container {
	labels := map[string]string{"podtail.app": "app-" + id}
	if tenant != "" {
		labels["podtail.tenant"] = tenant
	}
	state := "exited"
	if running {
		state = "running"
	}
	return podman.Container{
		ID: id, Name: "name-" + id, Labels: labels, State: state, Running: running, StartedAt: started,
		LogDriver: "k8s-file", LogPath: "/logs/" + id + ".log",
	}
}

// fixture runs a Discoverer over a fakeAPI.
type fixture struct {
	t    *testing.T
	api  *fakeAPI
	d    *discovery.Discoverer
	up   chan []discovery.Target
	sess *session // the current event subscription
}

// fixtureMapping is the mapping start uses: the podtail.* labels, a tenant
// required.
var fixtureMapping = discovery.MapConfig{TenantLabel: "podtail.tenant", AppLabel: "podtail.app", VersionLabel: "podtail.version", RequireTenant: true}

func start(t *testing.T, api *fakeAPI, reconcile time.Duration) *fixture {
	t.Helper()
	return startMapping(t, api, reconcile, fixtureMapping)
}

func startMapping(t *testing.T, api *fakeAPI, reconcile time.Duration, cfg discovery.MapConfig) *fixture {
	t.Helper()
	m := discovery.NewMapper(cfg)
	f := &fixture{t: t, api: api, up: make(chan []discovery.Target, 1),
		d: discovery.New(api, m, discovery.Config{ReconcileInterval: reconcile, ReconnectBackoff: time.Second, Started: podtailStart}, zap.NewNop())}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.d.Run(ctx, f.up) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
		case <-time.After(waitLimit):
			t.Error("Run did not return after cancel")
		}
	})
	f.sess = api.nextSession(t)
	return f
}

// next returns the next published set.
func (f *fixture) next() []discovery.Target {
	f.t.Helper()
	select {
	case set := <-f.up:
		return set
	case <-time.After(waitLimit):
		f.t.Fatal("nothing published")
		return nil
	}
}

// waitFor reads published sets until one satisfies cond, and returns it.
func (f *fixture) waitFor(what string, cond func(map[string]discovery.Target) bool) map[string]discovery.Target {
	f.t.Helper()
	deadline := time.After(waitLimit)
	var last []discovery.Target
	for {
		select {
		case set := <-f.up:
			last = set
			if m := byID(set); cond(m) {
				return m
			}
		case <-deadline:
			f.t.Fatalf("timed out waiting for %s; last set %+v", what, last)
			return nil
		}
	}
}

func byID(set []discovery.Target) map[string]discovery.Target {
	m := make(map[string]discovery.Target, len(set))
	for _, t := range set {
		m[t.ID] = t
	}
	return m
}

func ids(set []discovery.Target) []string {
	out := make([]string, len(set))
	for i, t := range set {
		out[i] = t.ID
	}
	return out
}

// The first set published is the full state listed after the event
// subscription was accepted (so no event can fall in a gap), sorted by ID,
// with only the containers that map to targets.
func TestDiscovererPublishesFullStateFirst(t *testing.T) {
	api := newFakeAPI(
		labelled("c2", "acme", true, before),
		labelled("c1", "beta", false, before),
		labelled("untenanted", "", true, before),
	)
	f := start(t, api, time.Hour)
	set := f.next()
	if got := ids(set); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("first set = %v, want [c1 c2]", got)
	}
	c1 := set[0]
	want := discovery.Target{ID: "c1", Name: "name-c1", Tenant: "beta", App: "app-c1", Running: false,
		Labels:    map[string]string{"podtail.tenant": "beta", "podtail.app": "app-c1"},
		StartedAt: before.UnixNano(), Existing: true, LogDriver: "k8s-file", LogPath: "/logs/c1.log"}
	if !c1.Equal(want) {
		t.Errorf("c1 = %+v, want %+v", c1, want)
	}
	calls := api.callLog()
	if i, j := slices.Index(calls, "subscribed"), slices.Index(calls, "list"); i < 0 || j < i {
		t.Errorf("calls %v: want the list after the subscription", calls)
	}
	eventually(t, "Connected", f.d.Connected)
}

// Events update the set: "start" of a new labelled container adds it,
// "died" marks it not running, "remove" removes it.
func TestDiscovererFollowsEvents(t *testing.T) {
	api := newFakeAPI(labelled("c1", "acme", true, before))
	f := start(t, api, time.Hour)
	if got := ids(f.next()); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("first set = %v", got)
	}

	api.set(labelled("c2", "acme", true, after))
	f.sess.send(t, "start", "c2")
	set := f.waitFor("c2 added", func(m map[string]discovery.Target) bool { _, ok := m["c2"]; return ok })
	if c2 := set["c2"]; !c2.Running || c2.Existing || c2.StartedAt != after.UnixNano() || c2.Tenant != "acme" {
		t.Errorf("c2 = %+v", c2)
	}
	if _, ok := set["c1"]; !ok {
		t.Error("c1 lost from the set")
	}

	api.set(labelled("c2", "acme", false, after))
	f.sess.send(t, "died", "c2")
	f.waitFor("c2 stopped", func(m map[string]discovery.Target) bool { c, ok := m["c2"]; return ok && !c.Running })

	api.remove("c2")
	f.sess.send(t, "remove", "c2")
	set = f.waitFor("c2 removed", func(m map[string]discovery.Target) bool { _, ok := m["c2"]; return !ok })
	if _, ok := set["c1"]; !ok || len(set) != 1 {
		t.Errorf("after remove, set = %v, want only c1", set)
	}
}

// Events the discoverer does not act on publish nothing, and events for
// containers that are not targets publish nothing either.
func TestDiscovererIgnoresIrrelevantEvents(t *testing.T) {
	api := newFakeAPI(labelled("c1", "acme", true, before))
	f := start(t, api, time.Hour)
	f.next()
	f.sess.send(t, "exec", "c1")
	f.sess.send(t, "health_status", "c1")
	api.set(labelled("untenanted", "", true, after))
	f.sess.send(t, "start", "untenanted")
	f.sess.send(t, "remove", "never-seen")
	// A last event that does change the set: whatever came before it was
	// handled by then, and must not have published on its own.
	api.set(labelled("c2", "acme", true, after))
	f.sess.send(t, "start", "c2")
	if got := ids(f.next()); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Errorf("published %v, want only the set with c2 added", got)
	}
	if n := api.count("inspect c1"); n != 1 {
		t.Errorf("c1 inspected %d times, want once (exec and health_status ignored)", n)
	}
}

// Containers without a tenant label are never published: not from the
// list, not from events, not after a reconcile.
func TestDiscovererNeverPublishesUntenanted(t *testing.T) {
	api := newFakeAPI(labelled("plain", "", true, before), labelled("c1", "acme", true, before))
	f := start(t, api, 10*time.Millisecond)
	check := func(set []discovery.Target) {
		t.Helper()
		for _, tg := range set {
			if tg.Tenant == "" || tg.ID == "plain" || tg.ID == "plain2" {
				t.Errorf("published a container without tenant: %+v", tg)
			}
		}
	}
	check(f.next())
	api.set(labelled("plain2", "", true, after))
	f.sess.send(t, "start", "plain2")
	api.set(labelled("c2", "acme", true, after))
	f.sess.send(t, "start", "c2")
	lists := api.count("list")
	for api.count("list") < lists+3 {
		check(f.next())
	}
}

// Existing is true exactly for containers started before podtail started;
// a container never started is not Existing.
func TestDiscovererExisting(t *testing.T) {
	api := newFakeAPI(
		labelled("old", "acme", true, before),
		labelled("new", "acme", true, after),
		labelled("never", "acme", false, time.Time{}),
	)
	f := start(t, api, time.Hour)
	set := byID(f.next())
	if len(set) != 3 {
		t.Fatalf("set = %v", set)
	}
	for id, want := range map[string]bool{"old": true, "new": false, "never": false} {
		if set[id].Existing != want {
			t.Errorf("%s Existing = %v, want %v", id, set[id].Existing, want)
		}
	}
}

// A container removed between an event and its inspection (not found) is
// not published, and the session goes on.
func TestDiscovererEventForVanishedContainer(t *testing.T) {
	api := newFakeAPI(labelled("c1", "acme", true, before))
	f := start(t, api, time.Hour)
	f.next()
	f.sess.send(t, "start", "ghost")
	api.set(labelled("c2", "acme", true, after))
	f.sess.send(t, "start", "c2")
	set := f.waitFor("c2 added", func(m map[string]discovery.Target) bool { _, ok := m["c2"]; return ok })
	if _, ok := set["ghost"]; ok {
		t.Error("a container that was not found was published")
	}
	if !f.d.Connected() {
		t.Error("not found ended the session")
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
