package discovery_test

import (
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/podman"
)

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

// A container in a pod is published from its create event with its pod's
// name and labels (its reader keeps the labels it started with); the pod's
// infra container is not published, and a container whose pod cannot be
// read waits for its inspect.
func TestDiscovererProvisionalPodTarget(t *testing.T) {
	api := newFakeAPI()
	api.storage = podman.Storage{GraphRoot: "/var/lib/containers/storage", LogDriver: "k8s-file"}
	api.pods = map[string]podman.Pod{"p1": {ID: "p1", Name: "shop-pod",
		Labels: map[string]string{"podtail.tenant": "acme", "podtail.app": "shop", "podtail.version": "v2"}}}
	// Each inspect waits until the test has looked at what the create event
	// alone published: a provisional target is published before it.
	holds := map[string]chan struct{}{"m": make(chan struct{}), "p1-infra-id": make(chan struct{}), "orphan": make(chan struct{})}
	api.holds = holds
	cfg := fixtureMapping
	cfg.PodLabels = true
	f := startMapping(t, api, time.Hour, cfg)
	f.next()
	nothingFrom := func(id string, ev podman.Event) {
		t.Helper()
		f.sess.sendEvent(t, ev)
		select {
		case set := <-f.up:
			if _, ok := toMap(set)[id]; ok {
				t.Errorf("%s published from its create event: %+v", id, toMap(set)[id])
			}
		case <-time.After(200 * time.Millisecond):
		}
		close(holds[id])
	}
	// As Podman 4.3.1 sends them: the infra container's create (named
	// <pod ID>-infra, with the pod's labels), then the members', with none.
	nothingFrom("p1-infra-id", podman.Event{Action: "create", ID: "p1-infra-id", Name: "p1-infra", Time: time.Now(),
		Attributes: map[string]string{"podtail.tenant": "acme", "name": "p1-infra", "podId": "p1"}})
	nothingFrom("orphan", podman.Event{Action: "create", ID: "orphan", Name: "orphan", Time: time.Now(),
		Attributes: map[string]string{"podtail.tenant": "acme", "name": "orphan", "podId": "gone"}})
	if n := api.count("pod gone"); n != 1 {
		t.Errorf("%d inspects of the unknown pod, want 1 (calls %v)", n, api.callLog())
	}
	f.sess.sendEvent(t, podman.Event{Action: "create", ID: "m", Name: "m", Image: "busybox", Time: time.Now(),
		Attributes: map[string]string{"name": "m", "image": "busybox", "podId": "p1"}})
	set := f.waitFor("the pod member's provisional target", func(m map[string]discovery.Target) bool { _, ok := m["m"]; return ok })
	close(holds["m"])
	if g := set["m"]; g.Tenant != "acme" || g.App != "shop" || g.Version != "v2" || g.Pod != "shop-pod" {
		t.Errorf("provisional target %+v, want the pod's tenant, application, version and name", g)
	}
}

func toMap(set []discovery.Target) map[string]discovery.Target {
	m := make(map[string]discovery.Target, len(set))
	for _, t := range set {
		m[t.ID] = t
	}
	return m
}
