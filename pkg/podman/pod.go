package podman

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Pod is what podtail knows about one pod.
type Pod struct {
	ID     string
	Name   string
	Labels map[string]string
}

// ErrPodNotFound says a pod no longer exists.
var ErrPodNotFound = errors.New("no such pod")

// podCacheIdle is how long a pod no container has asked about stays cached.
// A pod outlives its containers only briefly (podman pod rm removes them
// first), so a pod unused this long is almost always gone.
const podCacheIdle = time.Hour

// podCache remembers pods by ID. A pod's name and labels are fixed when it
// is created (Podman has no pod rename or relabel) and an ID is never used
// again, so an entry is never stale: the only reason to drop one is memory.
// Entries of pods no container asked about for podCacheIdle are dropped,
// which bounds the cache by the pods in use without following pod events.
type podCache struct {
	mu    sync.Mutex
	pods  map[string]podEntry
	swept time.Time
}

type podEntry struct {
	pod  Pod
	used time.Time
}

func (pc *podCache) get(id string, now time.Time) (Pod, bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	e, ok := pc.pods[id]
	if ok {
		e.used = now
		pc.pods[id] = e
	}
	return e.pod, ok
}

func (pc *podCache) put(p Pod, now time.Time) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.pods == nil {
		pc.pods = map[string]podEntry{}
	}
	pc.pods[p.ID] = podEntry{pod: p, used: now}
	// Sweeping at most once per idle period keeps a put O(1) amortised.
	if now.Sub(pc.swept) < podCacheIdle {
		return
	}
	pc.swept = now
	for id, e := range pc.pods {
		if now.Sub(e.used) >= podCacheIdle {
			delete(pc.pods, id)
		}
	}
}

func (pc *podCache) len() int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.pods)
}

// Pod returns a pod's name and labels, by its full ID from the cache, or
// from the service (GET /libpod/pods/{id}/json); an error wraps ErrPodNotFound when
// the pod is gone.
func (c *Client) Pod(ctx context.Context, id string) (Pod, error) {
	if p, ok := c.pods.get(id, time.Now()); ok {
		return p, nil
	}
	var d apiPod
	if err := c.get(ctx, "/pods/%s/json", nil, &d, id); err != nil {
		var ee interface{ Code() int }
		if errors.As(err, &ee) && ee.Code() == http.StatusNotFound {
			return Pod{}, fmt.Errorf("podman %s: inspect pod %s: %w", c.uri, Short(id), ErrPodNotFound)
		}
		return Pod{}, fmt.Errorf("podman %s: inspect pod %s: %w", c.uri, Short(id), err)
	}
	p := Pod{ID: d.ID, Name: d.Name, Labels: d.Labels}
	if d.ID == id {
		// Only a full ID is cached: a name or short ID may name another pod
		// later.
		c.pods.put(p, time.Now())
	}
	return p, nil
}

// withPod fills ct's pod name and labels from its pod's ID. When the service
// answered but could not say (the pod was removed meanwhile, or a read-only
// proxy refuses pods/), the container is still returned, with PodErr saying
// why: mapping then names the cause only if it needs the pod's labels. A
// connection that failed is an error, as for the container's own inspect.
func (c *Client) withPod(ctx context.Context, ct *Container) error {
	if ct.PodID == "" {
		return nil
	}
	p, err := c.Pod(ctx, ct.PodID)
	var ee interface{ Code() int }
	switch {
	case err == nil:
		ct.Pod, ct.PodLabels = p.Name, p.Labels
	case errors.Is(err, ErrPodNotFound) || errors.As(err, &ee):
		ct.PodErr = err
	default:
		return err
	}
	return nil
}
