package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// schedule places the faults of a soak of duration d. podtail is SIGKILLed
// every interval (d/6: every 10 minutes in the hour; at least 100 s, so the
// 5-minute run kills it twice), the first kill half an interval after d/6,
// so that the two windows whose RSS the soak compares (the end of the first
// sixth, and the end of the run) each fall half an interval or more from a
// restart. Loki is restarted twice, at d/3 and 2d/3 plus a quarter interval:
// never at a kill.
func schedule(d time.Duration) (kills, lokis []time.Duration) {
	every := max(d/6, 100*time.Second)
	for t := d/6 + every/2; t < d-every/4; t += every {
		kills = append(kills, t)
	}
	return kills, []time.Duration{d/3 + every/4, 2*d/3 + every/4}
}

// event is one fault, as the report lists it.
type event struct {
	At   time.Duration // since the churn began
	What string
	Took time.Duration // until podtail or Loki was ready again
}

// faults injects the schedule's faults and restarts a podtail that ended
// by itself (a failure the report names).
type faults struct {
	p     *podtail
	loki  *testbed.Loki
	start time.Time

	mu     sync.Mutex
	events []event
	totals map[string]float64 // podtail's counters summed over its processes
	err    error              // podtail or Loki could not be started again
}

// counters are podtail's counters the report sums over every process.
var counters = []string{
	`podtail_loki_replayed_entries_total{outcome="stored"}`,
	`podtail_loki_replayed_entries_total{outcome="sent"}`,
	`podtail_loki_entries_dropped_total`,
	`podtail_loki_uncertain_pushes_total`,
	`podtail_loki_entries_sent_total`,
}

// collect adds the running podtail's counters to the totals: called just
// before it is killed or stopped.
func (f *faults) collect() {
	m := f.p.metrics(counters...)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.totals == nil {
		f.totals = map[string]float64{}
	}
	for k, v := range m {
		f.totals[k] += v
	}
}

func (f *faults) note(at time.Duration, what string, took time.Duration) {
	f.mu.Lock()
	f.events = append(f.events, event{At: at, What: what, Took: took})
	f.mu.Unlock()
	fmt.Printf("soak: %s %s (%s)\n", at.Round(time.Second), what, took.Round(time.Millisecond))
}

func (f *faults) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

// run injects the faults at their times, and watches podtail every second,
// until ctx ends.
func (f *faults) run(ctx context.Context, kills, lokis []time.Duration) {
	type fault struct {
		at   time.Duration
		kill bool
	}
	var todo []fault
	for _, k := range kills {
		todo = append(todo, fault{k, true})
	}
	for _, l := range lokis {
		todo = append(todo, fault{l, false})
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Since(f.start)
		if gone, how := f.p.exitedByItself(); gone {
			f.note(now, "podtail exited by itself: "+how, 0)
			f.fail(fmt.Errorf("podtail exited by itself at %s: %s", now.Round(time.Second), how))
			if err := f.p.start("after it exited by itself"); err != nil {
				f.fail(err)
			}
		}
		for i := 0; i < len(todo); i++ {
			if todo[i].at > now {
				continue
			}
			if todo[i].kill {
				f.collect()
				f.p.kill()
				began := time.Now()
				if err := f.p.start("after SIGKILL"); err != nil {
					f.fail(err)
				}
				f.note(now, "podtail SIGKILLed and started again", time.Since(began))
			} else {
				began := time.Now()
				f.loki.Stop()
				if err := f.loki.Start(); err != nil {
					f.fail(fmt.Errorf("loki did not start again: %w", err))
				}
				f.note(now, "Loki stopped (SIGINT, WAL kept) and started again", time.Since(began))
			}
			todo = append(todo[:i], todo[i+1:]...)
			i--
		}
	}
}

// list returns the events so far, the counters' totals, and the first
// failure.
func (f *faults) list() ([]event, map[string]float64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := map[string]float64{}
	for k, v := range f.totals {
		t[k] = v
	}
	return append([]event(nil), f.events...), t, f.err
}
