package podman

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The pod answers in testdata/podman-4.3.1 were recorded from the same
// service, for a pod and a container in it writing into a named volume:
//
//	podman pod create --name ptv-pod1 --label tenant=t1 --label app=a --label version=v1
//	podman volume create ptv-vol1
//	podman run -d --name ptv-c1 --pod ptv-pod1 -v ptv-vol1:/app/workplace/logs \
//	  localhost/podtail-busybox:latest sh -c '...'
//
// inspect-pod-member.json is ptv-c1's inspect, inspect-pod-infra.json the
// pod's infra container's, pod-inspect.json the pod's, pod-404.json the
// answer for a pod that does not exist, and events-pod.jsonl the create
// events of the infra container and of ptv-c1.
const (
	recordedPodID = "594852617ca76460a779e41b18f2a2d64e9bce11ebf60e9f78443f057f7dc1c9"
	podMemberID   = "56d40cd31f88f34148fa6a327f66967cda7427a826ffeeee40e0352a0c374c5d"
	podInfraID    = "9ddb49f0bc4b937720ad53aae11ab04fbf1d04423c5f3f7c76d11d2b5a0b87b6"
)

var recordedPodLabels = map[string]string{"tenant": "t1", "app": "a", "version": "v1"}

// podRequests counts the pod inspects the service has seen so far.
func podRequests(f *fakeService) int {
	n := 0
	for {
		select {
		case p := <-f.paths:
			if strings.Contains(p, "/pods/") {
				n++
			}
		default:
			return n
		}
	}
}

// A container in a pod gets the pod's name and labels (its own has none),
// and its named volume's host directory as the mount's source; the pod is
// asked for once, then served from the cache.
func TestRecordedPodMember(t *testing.T) {
	uri, f := startService(t, false)
	c := connectTo(t, uri)
	ctx := context.Background()
	for i := range 2 {
		ct, err := c.Inspect(ctx, podMemberID)
		if err != nil {
			t.Fatal(err)
		}
		if ct.PodID != recordedPodID || ct.Pod != "ptv-pod1" || !reflect.DeepEqual(ct.PodLabels, recordedPodLabels) ||
			ct.PodErr != nil || ct.Infra || len(ct.Labels) != 0 || ct.Name != "ptv-c1" {
			t.Errorf("inspect %d = %+v", i, ct)
		}
		want := Mount{Type: "volume", Name: "ptv-vol1", Source: "/var/lib/containers/storage/volumes/ptv-vol1/_data",
			Destination: "/app/workplace/logs", RW: true}
		if len(ct.Mounts) != 1 || ct.Mounts[0] != want {
			t.Errorf("Mounts = %+v, want %+v", ct.Mounts, want)
		}
	}
	if n := podRequests(f); n != 1 {
		t.Errorf("%d pod inspects for two container inspects, want 1 (cached)", n)
	}
}

// The infra container is marked, and carries the pod's labels itself.
func TestRecordedPodInfra(t *testing.T) {
	uri, _ := startService(t, false)
	ct, err := connectTo(t, uri).Inspect(context.Background(), podInfraID)
	if err != nil {
		t.Fatal(err)
	}
	if !ct.Infra || ct.PodID != recordedPodID || ct.Pod != "ptv-pod1" || ct.Labels["tenant"] != "t1" {
		t.Errorf("Inspect = %+v, want the pod's infra container", ct)
	}
}

// A service that answers a pod inspect with a refusal (a read-only proxy
// that does not pass pods/) leaves the container known, its pod unknown and
// the reason in PodErr; a connection that breaks fails the inspect, as it
// would for the container's own.
func TestPodInspectFails(t *testing.T) {
	uri, f := startService(t, false)
	f.refusePods = true
	ct, err := connectTo(t, uri).Inspect(context.Background(), podMemberID)
	if err != nil {
		t.Fatalf("Inspect with pods refused: %v, want the container", err)
	}
	if ct.PodErr == nil || !strings.Contains(ct.PodErr.Error(), "403") || !strings.Contains(ct.PodErr.Error(), "inspect pod 594852617ca7") ||
		ct.Pod != "" || ct.PodLabels != nil || ct.PodID != recordedPodID {
		t.Errorf("Inspect = %+v (PodErr %v), want the pod unknown and the 403 named", ct, ct.PodErr)
	}

	uri, f = startService(t, false)
	f.dropPods = true
	_, err = connectTo(t, uri).Inspect(context.Background(), podMemberID)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "inspect 56d40cd31f88") {
		t.Errorf("Inspect with the connection dropped = %v, want an error naming the container", err)
	}
}

// A pod that is gone is ErrPodNotFound, and is not cached: a pod inspect
// failing says nothing lasting.
func TestPodNotFound(t *testing.T) {
	uri, f := startService(t, false)
	c := connectTo(t, uri)
	gone := strings.Repeat("0", 64)
	for range 2 {
		if _, err := c.Pod(context.Background(), gone); !errors.Is(err, ErrPodNotFound) {
			t.Errorf("Pod(gone) = %v, want ErrPodNotFound", err)
		}
	}
	if n := podRequests(f); n != 2 {
		t.Errorf("%d pod inspects, want 2 (a miss is not cached)", n)
	}
	if c.pods.len() != 0 {
		t.Errorf("cache holds %d pods after misses", c.pods.len())
	}
}

// A create event names the pod; the infra container's (Podman's default
// name, <12 of the pod ID>-infra) is taken for the infra container until
// inspect says.
func TestContainerFromPodEvents(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "podman-4.3.1", "events-pod.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var got []Container
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var e apiEvent
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatal(err)
		}
		got = append(got, ContainerFromEvent(e.event()))
	}
	if len(got) != 2 {
		t.Fatalf("%d events", len(got))
	}
	infra, member := got[0], got[1]
	if infra.ID != podInfraID || !infra.Infra || infra.PodID != recordedPodID || infra.Labels["tenant"] != "t1" {
		t.Errorf("infra = %+v", infra)
	}
	if member.ID != podMemberID || member.Infra || member.PodID != recordedPodID || len(member.Labels) != 0 {
		t.Errorf("member = %+v; want no labels (podId is Podman's attribute, not a label)", member)
	}
}

// Entries stay while asked for and go after an hour unused; sweeping runs
// on puts at most once an hour.
func TestPodCacheEviction(t *testing.T) {
	var pc podCache
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	a, b, c := Pod{ID: "a", Name: "pa"}, Pod{ID: "b"}, Pod{ID: "c"}
	pc.put(a, t0)
	if p, ok := pc.get("a", t0.Add(30*time.Minute)); !ok || p.Name != "pa" {
		t.Fatalf("get(a) = %+v, %v", p, ok)
	}
	pc.put(b, t0.Add(61*time.Minute)) // sweeps: a was used 31 min ago
	if _, ok := pc.get("a", t0.Add(61*time.Minute)); !ok {
		t.Error("a, used 31 minutes ago, was evicted")
	}
	pc.put(c, t0.Add(100*time.Minute)) // no sweep: the last was 39 min ago
	if pc.len() != 3 {
		t.Errorf("len = %d after a put within the hour, want 3", pc.len())
	}
	pc.put(c, t0.Add(162*time.Minute)) // sweeps: a and b unused for 101 min
	if _, ok := pc.get("a", t0.Add(162*time.Minute)); ok || pc.len() != 1 {
		t.Errorf("after the sweep: len %d, a present %v; want only c", pc.len(), ok)
	}
}
