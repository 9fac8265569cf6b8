package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
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

// fakeAPI is a Podman service the test controls: the containers it lists
// and inspects, and each event subscription (a session).
type fakeAPI struct {
	mu         sync.Mutex
	containers map[string]podman.Container
	calls      []string // "subscribed", "list", "inspect <id>", in order
	gate       chan struct{}
	sessions   chan *session
	storage    podman.Storage // zero: no provisional targets from create events
	// holds: Inspect of these IDs answers only once the channel is closed.
	holds map[string]chan struct{}
}

// session is one Events call: the test sends events on it, or ends it with
// an error.
type session struct {
	events chan podman.Event
	fail   chan error
}

func newFakeAPI(cs ...podman.Container) *fakeAPI {
	f := &fakeAPI{containers: map[string]podman.Container{}, sessions: make(chan *session, 16)}
	for _, c := range cs {
		f.containers[c.ID] = c
	}
	return f
}

func (f *fakeAPI) Storage(context.Context) (podman.Storage, error) { return f.storage, nil }

func (f *fakeAPI) List(ctx context.Context) ([]podman.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "list")
	var out []podman.Summary
	for _, c := range f.containers {
		// As Podman's ps does: startedTime.Unix(), also for a zero time.
		out = append(out, podman.Summary{ID: c.ID, Name: c.Name, State: c.State, StartedAt: c.StartedAt.Unix()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeAPI) Inspect(ctx context.Context, id string) (podman.Container, error) {
	f.mu.Lock()
	hold := f.holds[id]
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return podman.Container{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "inspect "+id)
	c, ok := f.containers[id]
	if !ok {
		return podman.Container{}, fmt.Errorf("inspect %s: %w", id, podman.ErrNotFound)
	}
	c.Labels = maps.Clone(c.Labels)
	return c, nil
}

func (f *fakeAPI) Events(ctx context.Context, out chan<- podman.Event, subscribed func()) error {
	s := &session{events: make(chan podman.Event), fail: make(chan error, 1)}
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	f.sessions <- s
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, "subscribed")
	f.mu.Unlock()
	subscribed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-s.fail:
			return err
		case ev := <-s.events:
			select {
			case out <- ev:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func (f *fakeAPI) set(c podman.Container) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[c.ID] = c
}

func (f *fakeAPI) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
}

// holdSubscriptions makes later Events calls wait for the returned channel
// to be closed before they subscribe.
func (f *fakeAPI) holdSubscriptions() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = make(chan struct{})
	return f.gate
}

func (f *fakeAPI) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeAPI) count(call string) int {
	n := 0
	for _, c := range f.callLog() {
		if c == call {
			n++
		}
	}
	return n
}

// nextSession waits for the next Events call.
func (f *fakeAPI) nextSession(t *testing.T) *session {
	t.Helper()
	select {
	case s := <-f.sessions:
		return s
	case <-time.After(waitLimit):
		t.Fatal("no Events subscription")
		return nil
	}
}

func (s *session) send(t *testing.T, action, id string) {
	t.Helper()
	s.sendEvent(t, podman.Event{Action: action, ID: id, Time: time.Now()})
}

func (s *session) sendEvent(t *testing.T, ev podman.Event) {
	t.Helper()
	select {
	case s.events <- ev:
	case <-time.After(waitLimit):
		t.Fatalf("event %s %s not taken", ev.Action, ev.ID)
	}
}

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

func start(t *testing.T, api *fakeAPI, reconcile time.Duration) *fixture {
	t.Helper()
	m := discovery.NewMapper(discovery.MapConfig{TenantLabel: "podtail.tenant", AppLabel: "podtail.app", VersionLabel: "podtail.version", RequireTenant: true})
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

// A --rm container gone before podtail could inspect it (Podman delivers
// events ~200 ms late): its create event alone publishes a target with the
// default k8s-file path, so a reader can hold its log open; the inspect that
// finds nothing then removes the target (its reader drains what it holds).
func TestDiscovererProvisionalTargetFromCreateEvent(t *testing.T) {
	api := newFakeAPI()
	api.storage = podman.Storage{GraphRoot: "/var/lib/containers/storage", LogDriver: "k8s-file"}
	// The inspect answers only once the provisional set has been seen: the
	// fixture keeps the latest set only, and a quick inspect's removal could
	// replace it unseen (it did, once, under the race detector in CI).
	inspected := make(chan struct{})
	api.holds = map[string]chan struct{}{"gone": inspected}
	f := start(t, api, time.Hour)
	f.next()
	f.sess.sendEvent(t, podman.Event{Action: "create", ID: "gone", Name: "blink", Time: time.Now(),
		Attributes: map[string]string{"podtail.tenant": "acme", "podtail.app": "shop", "name": "blink", "image": "busybox"}})
	set := f.waitFor("the provisional target", func(m map[string]discovery.Target) bool { _, ok := m["gone"]; return ok })
	close(inspected)
	g := set["gone"]
	if g.LogPath != "/var/lib/containers/storage/overlay-containers/gone/userdata/ctr.log" || g.Tenant != "acme" || g.App != "shop" || !g.Running {
		t.Errorf("provisional target %+v", g)
	}
	f.waitFor("its removal after the inspect found nothing", func(m map[string]discovery.Target) bool { _, ok := m["gone"]; return !ok })

	// Without a tenant label the event publishes nothing.
	f.sess.sendEvent(t, podman.Event{Action: "create", ID: "anon", Time: time.Now(), Attributes: map[string]string{"name": "anon"}})
	f.sess.send(t, "start", "anon")
	select {
	case set := <-f.up:
		if _, ok := toMap(set)["anon"]; ok {
			t.Errorf("an untenanted container was published: %v", set)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// On a journald host (vfs storage, say) the create event publishes a target
// whose output is read from the journal, with no log path to guess.
func TestDiscovererProvisionalJournalTarget(t *testing.T) {
	api := newFakeAPI()
	api.storage = podman.Storage{GraphRoot: "/var/lib/containers/storage", Driver: "vfs", LogDriver: "journald"}
	inspected := make(chan struct{})
	api.holds = map[string]chan struct{}{"j": inspected}
	f := start(t, api, time.Hour)
	f.next()
	f.sess.sendEvent(t, podman.Event{Action: "create", ID: "j", Name: "j", Time: time.Now(),
		Attributes: map[string]string{"podtail.tenant": "acme", "name": "j"}})
	set := f.waitFor("the provisional target", func(m map[string]discovery.Target) bool { _, ok := m["j"]; return ok })
	close(inspected)
	if g := set["j"]; g.LogDriver != "journald" || g.LogPath != "" || !g.HasOutput() {
		t.Errorf("provisional journald target %+v", g)
	}
}

func toMap(set []discovery.Target) map[string]discovery.Target {
	m := make(map[string]discovery.Target, len(set))
	for _, t := range set {
		m[t.ID] = t
	}
	return m
}
