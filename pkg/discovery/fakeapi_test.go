package discovery_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/podman"
)

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
	pods  map[string]podman.Pod // by ID; Inspect fills its containers' pod from it
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
	if p, ok := f.pods[c.PodID]; ok {
		c.Pod, c.PodLabels = p.Name, maps.Clone(p.Labels)
	}
	return c, nil
}

// Pod answers from f.pods, as the client's pod inspect: a pod not there is
// gone.
func (f *fakeAPI) Pod(_ context.Context, id string) (podman.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "pod "+id)
	if p, ok := f.pods[id]; ok {
		return p, nil
	}
	return podman.Pod{}, fmt.Errorf("inspect pod %s: %w", id, podman.ErrPodNotFound)
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
