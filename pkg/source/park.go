package source

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
)

// A container's reader (ContainerOutput, JournalOutput) has no goroutine
// while it waits, as file.Dir has none: what wakes it (a write inotify or
// the journal's watcher reports, Wake, SetDraining, its timer, its
// context's end) sets a bit in one word and, unless a step is under way,
// starts a goroutine that steps the reader until it has nothing left to
// do. With a goroutine and a 64 KiB read buffer held each, 200 waiting
// containers cost what 1,000 waiting files did not (issue 21): the stack a
// read grows is kept while the goroutine waits, and so was the buffer.
//
// The parking is the only state other goroutines touch; everything else in
// a reader belongs to the goroutine stepping it, and the word's atomic
// operations order one step's writes before the next step's reads.

// Bits of parking.word.
const (
	// parkStepping: a goroutine is stepping the reader (or it has ended).
	parkStepping uint32 = 1 << iota
	// parkWoken: look for output now.
	parkWoken
)

// clock is the readers' time: the wall clock, or a test's, which makes
// max_wait, the poll and the wake-up at a joined entry's deadline testable
// without sleeping.
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) clockwork.Timer
}

// next is what a step asks for: step again now, wait (for after at most,
// or until woken), or end (err: why; nil when drained or ctx ended).
type next struct {
	again bool
	after time.Duration
	end   bool
	err   error
}

// nudgeGap: a change reported (Nudge) while the reader's next look is due
// within this long is left to that look. A log written a line at a time is
// then read in batches, a step every pollMin or so while it is busy, rather
// than a step (a read, a stat, a timer) per write: 1,000 lines a second were
// 1,000 steps a second. A quiet log's reader waits longer than this, and a
// change wakes it at once.
const nudgeGap = 2 * pollMin

// parking runs a reader's steps. Between Start and the end, step is called
// by one goroutine at a time.
type parking struct {
	word     atomic.Uint32
	due      atomic.Int64 // when the parked reader's timer fires (Unix ns); 0 while stepping
	draining atomic.Bool
	drainAt  atomic.Int64 // when SetDraining(true) was last called (Unix ns)
	clock    clock
	timer    clockwork.Timer

	ctx     context.Context
	step    func(ctx context.Context, now time.Time) next
	stopCtx func() bool
	done    func(error)
}

// init readies p, before Start; a kick until then only sets the reason.
func (p *parking) init() {
	p.clock = clockwork.NewRealClock()
	p.word.Store(parkStepping)
}

// start begins stepping with step; done is called once, after the last
// step, with what ended the reader.
func (p *parking) start(ctx context.Context, step func(context.Context, time.Time) next, done func(error)) {
	p.ctx, p.step, p.done = ctx, step, done
	p.timer = p.clock.AfterFunc(time.Hour, p.Wake)
	p.timer.Stop()
	p.stopCtx = context.AfterFunc(ctx, p.Wake)
	p.word.And(^parkStepping)
	p.Wake()
}

// Wake makes the reader look for output now rather than at its next poll.
func (p *parking) Wake() {
	if p.word.Or(parkWoken|parkStepping)&parkStepping == 0 {
		go p.steps()
	}
}

// Nudge tells the reader its log (or the journal) changed: it looks now,
// unless it will anyway within nudgeGap.
func (p *parking) Nudge() {
	if due := p.due.Load(); due != 0 && due-p.clock.Now().UnixNano() <= int64(nudgeGap) {
		return
	}
	p.Wake()
}

// SetDraining tells the reader whether the container has stopped: a
// draining reader reads to the end of the log (for JournalOutput: of what
// the journal holds) and ends.
func (p *parking) SetDraining(v bool) {
	if p.draining.Load() == v {
		return // told again (every Sync does): the settle counts from the first
	}
	if v {
		p.drainAt.Store(p.clock.Now().UnixNano())
	}
	if p.draining.Swap(v) != v {
		p.Wake()
	}
}

// steps takes steps while there are reasons to, then leaves; once the
// reader has ended, parkStepping stays set and nothing starts again.
func (p *parking) steps() {
	for {
		p.word.And(^parkWoken)
		p.due.Store(0)
		now := p.clock.Now()
		n := p.step(p.ctx, now)
		if n.end {
			p.timer.Stop()
			p.stopCtx()
			p.done(n.err)
			return
		}
		if n.again {
			continue
		}
		p.due.Store(now.Add(n.after).UnixNano())
		p.timer.Reset(n.after)
		for {
			cur := p.word.Load()
			if cur&parkWoken != 0 {
				break // woken meanwhile: step again
			}
			if p.word.CompareAndSwap(cur, cur&^parkStepping) {
				return
			}
		}
	}
}

// settled says whether a draining reader has found nothing new for
// settle, counted from when it last found something or from when it was
// told the container stopped, whichever is later: a reader that had found
// nothing for a while must still wait for the container's last output,
// which conmon (or journald, behind its socket) writes after Podman says
// the container died. idle is when it last found nothing new (zero: it
// just found something); the first look that finds nothing sets it to now.
func (p *parking) settled(now time.Time, idle *time.Time, settle time.Duration) bool {
	if idle.IsZero() {
		*idle = now
	}
	if !p.draining.Load() {
		return false
	}
	from := *idle
	if at := time.Unix(0, p.drainAt.Load()); at.After(from) {
		from = at
	}
	return now.Sub(from) >= settle
}

// wait is how long a reader that found nothing waits at most: poll, but no
// longer than a draining reader needs to tell that it has settled.
func (p *parking) wait(poll time.Duration) time.Duration {
	if p.draining.Load() {
		return min(poll, drainSettle)
	}
	return poll
}

// runParked runs a parked reader by its Start and waits for its end.
func runParked(ctx context.Context, start func(context.Context, func(error))) error {
	ended := make(chan error, 1)
	start(ctx, func(err error) { ended <- err })
	return <-ended
}
