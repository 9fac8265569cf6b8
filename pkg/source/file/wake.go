package file

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
)

// A tailer has no goroutine while it waits. What wakes it (a change inotify
// reports, Wake, its timer, a read slot granted, the end of its context)
// sets a reason in one word and, unless a step is under way, starts a
// goroutine that steps (Dir.step) until no reason is left. With a goroutine
// each, 500 directories waiting held 2-3 MiB of stacks: Go shrinks a waiting
// goroutine's stack to no less than 4 KiB once a cycle has grown it.
//
// The waker is the only state other goroutines touch; everything else in a
// Dir belongs to the goroutine stepping it.

// Bits of waker.word. The reasons are taken (cleared) by the step that
// answers them; the states stay until changed.
const (
	// stepping: a goroutine is stepping the tailer (or it has ended).
	stepping uint32 = 1 << iota
	// woken: look at the directory (a write, the poll, Start, ctx's end).
	woken
	// relist: a name in the directory changed, Wake was called, or a wait
	// for the sink or a read slot lasted its longest: list the directory
	// before reading on.
	relist
	// granted: a read slot the tailer queued for is its own now.
	granted
	// draining (state): the container stopped; read everything, then end.
	draining
	// queued (state): in line for a read slot.
	queued

	reasons = woken | relist | granted
)

// waker is a tailer's wake word, its one timer (the poll, or how long a wait
// for a read slot or for the sink lasts), and the cancel of the sink wait
// under way, if any.
type waker struct {
	word     atomic.Uint32
	due      atomic.Int64 // when the waiting tailer's timer fires (Unix ns); 0 while stepping
	timer    clockwork.Timer
	stopWait atomic.Pointer[context.CancelFunc]
}

// set sets bits and reports whether any of them was not set.
func (w *waker) set(bits uint32) bool { return w.word.Or(bits)&bits != bits }

// unset clears bits and reports whether any of them was set.
func (w *waker) unset(bits uint32) bool { return w.word.And(^bits)&bits != 0 }

// take clears bits and returns those that were set.
func (w *waker) take(bits uint32) uint32 { return w.word.And(^bits) & bits }

func (w *waker) has(bits uint32) bool { return w.word.Load()&bits != 0 }

// kick sets reasons, and starts a goroutine stepping d unless one is.
func (d *Dir) kick(why uint32) {
	if d.w.word.Or(why|stepping)&stepping == 0 {
		go d.steps()
	}
}

// steps takes steps while there are reasons to, then leaves; once the
// tailer has ended, stepping stays set and nothing starts again.
func (d *Dir) steps() {
	for {
		d.w.due.Store(0)
		woke := d.w.take(reasons)
		for {
			wt := d.step(d.clock.Now(), woke)
			if wt.end {
				d.end(wt.err)
				return
			}
			if !wt.again {
				d.wait(wt)
				break
			}
			woke = d.w.take(reasons)
		}
		for {
			cur := d.w.word.Load()
			if cur&reasons != 0 {
				break // woken meanwhile: step again
			}
			if d.w.word.CompareAndSwap(cur, cur&^stepping) {
				return
			}
		}
	}
}

// wait sets up what ends wt: the timer, and the tailer's place in its
// tenant's queue for a read slot.
func (d *Dir) wait(wt wait) {
	d.w.due.Store(d.clock.Now().Add(wt.after).UnixNano())
	d.w.timer.Reset(wt.after)
	if wt.slot && d.w.set(queued) {
		d.cfg.ReadSlots.wait(d.cfg.Tenant, d.waiter)
	}
}

// Start tails until ctx ends or, once draining, until everything is read,
// then calls done with what ended it (nil, or a read error).
func (d *Dir) Start(ctx context.Context, done func(error)) {
	d.ctx, d.done = ctx, done
	d.waiter = &slotWaiter{grant: func() { d.kick(granted) }}
	d.w.timer = d.clock.AfterFunc(time.Hour, d.onTimer)
	d.w.timer.Stop()
	d.stopCtx = context.AfterFunc(ctx, func() { d.kick(woken) })
	d.stopWatch = d.watch()
	d.w.unset(stepping) // kicks before Start only set reasons
	d.kick(woken)
}

// Run is Start, waiting for the end.
func (d *Dir) Run(ctx context.Context) error {
	ended := make(chan error, 1)
	d.Start(ctx, func(err error) { ended <- err })
	return <-ended
}

// SetDraining tells the tailer its container has stopped: a draining tailer
// reads every file to its end and returns.
func (d *Dir) SetDraining(v bool) {
	changed := d.w.unset(draining)
	if v {
		changed = d.w.set(draining)
	}
	if changed {
		d.Wake()
	}
}

// Wake makes the tailer look at its directory now.
func (d *Dir) Wake() {
	d.interrupt()
	d.kick(woken)
}

// interrupt ends a reader's wait on the sink, if one waits, so that the
// directory is listed now.
func (d *Dir) interrupt() {
	d.w.set(relist)
	if stop := d.w.stopWait.Load(); stop != nil {
		(*stop)()
	}
}

// onTimer: the poll is due, or a wait for the sink or a read slot lasted
// its longest (the directory is listed before the wait goes on).
func (d *Dir) onTimer() {
	if stop := d.w.stopWait.Load(); stop != nil {
		d.w.set(relist)
		(*stop)() // the step under way lists next
		return
	}
	if d.w.has(queued) {
		d.w.set(relist)
	}
	d.kick(woken)
}

// changed is inotify's word that something in the directory changed:
// renamed, a name came, went or moved (a rotation, which a reader held
// back by the sink must not miss). A write to a tailer queued for a read
// slot waits for the slot: a cycle per write would only find none free;
// one to a tailer whose look is due within batchGap waits for the look.
func (d *Dir) changed(renamed bool) {
	if renamed {
		d.interrupt()
	} else if d.w.has(queued) {
		return
	} else if due := d.w.due.Load(); due != 0 && due-d.clock.Now().UnixNano() <= int64(batchGap) {
		return // the look due soon reads it (batchLook)
	}
	d.kick(woken)
}

// end undoes Start and says why the tailer ended.
func (d *Dir) end(err error) {
	d.w.timer.Stop()
	d.stopCtx()
	d.stopWatch()
	if d.w.unset(queued) {
		d.cfg.ReadSlots.cancel(d.cfg.Tenant, d.waiter) // false: granted, and the bit says so
	}
	if d.w.take(granted) != 0 {
		d.cfg.ReadSlots.release(d.cfg.Tenant)
	}
	d.dropSlot()
	d.closeAll()
	d.done(err)
}

// sinkWait returns the context readers wait on the sink with. It ends with
// ctx, when a name in the directory changes or Wake is called (see
// interrupt), or after relistEvery (onTimer), and the next cycle then lists
// the directory; stop releases it. It has no goroutine of its own: with
// hundreds of directories held back, one each was megabytes of stacks.
func (d *Dir) sinkWait(ctx context.Context) (wctx context.Context, stop func()) {
	wctx, cancel := context.WithCancel(ctx)
	d.w.stopWait.Store(&cancel)
	if d.w.timer != nil { // nil: stepped by a test, which ends waits itself
		d.w.timer.Reset(d.relistEvery())
	}
	if d.w.has(relist) {
		// A name changed since the listing began, between two waits (no wait
		// to end then): list again before waiting. (Missing this let a
		// file created and deleted within the held-back second go unread.)
		cancel()
	}
	return wctx, func() {
		d.w.stopWait.Store(nil)
		if d.w.timer != nil {
			d.w.timer.Stop() // the step's end sets it again
		}
		cancel()
	}
}

// watch sets up inotify for the directory: a change kicks the tailer (nil
// Watch and no inotify: polling only). It returns what stops the watch.
func (d *Dir) watch() (stop func()) {
	w := d.cfg.Watch
	var closeOwn func() error
	if w == nil {
		own, err := NewWatcher(d.log)
		if err != nil {
			d.log.Warn("inotify unavailable; polling", zap.Error(err), zap.Duration("every", d.cfg.Poll))
		} else {
			closeOwn, w = own.Close, own
		}
	}
	stopWatch := func() {}
	if w != nil {
		stopW, err := w.Watch(d.cfg.Dir, d.changed)
		if err != nil {
			d.log.Info("cannot watch the directory (yet); polling", zap.Error(err))
		} else {
			d.watched, stopWatch = true, stopW
		}
	}
	return func() {
		stopWatch()
		if closeOwn != nil {
			_ = closeOwn()
		}
	}
}

// rewatch watches the directory again through the shared watcher, after
// it was removed (and its watch with it) and listed again.
func (d *Dir) rewatch() {
	if d.cfg.Watch == nil {
		return
	}
	if stop, err := d.cfg.Watch.Watch(d.cfg.Dir, d.changed); err == nil {
		d.stopWatch, d.watched = stop, true
	}
}

// unwatch stops the directory's watch (removed with the directory).
func (d *Dir) unwatch() {
	if d.stopWatch != nil {
		d.stopWatch()
	}
	d.stopWatch, d.watched = func() {}, false
}
