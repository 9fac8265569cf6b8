package file

import (
	"errors"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Watcher is one inotify instance shared by every directory tailer. Each
// fsnotify watcher has a goroutine whose stack holds a 64 KiB event buffer
// and three descriptors: one per directory cost 32 MiB of stacks with a
// thousand log directories (make bench), more than the lines in flight.
// Tailers only need to hear "something changed here", so one watcher pokes
// the tailer of the event's directory.
type Watcher struct {
	w   *fsnotify.Watcher
	log *zap.Logger

	mu   sync.Mutex
	subs map[string]map[*watch]struct{} // directory -> its tailers' watches
	done chan struct{}
}

// watch is one tailer's subscription to its directory.
type watch struct{ onChange func(renamed bool) }

// NewWatcher starts the shared watcher. When inotify is unavailable it
// returns the error, and tailers poll.
func NewWatcher(log *zap.Logger) (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	x := &Watcher{w: w, log: log, subs: map[string]map[*watch]struct{}{}, done: make(chan struct{})}
	go x.run()
	return x, nil
}

// Close stops the watcher; no callback is called after it returns.
func (x *Watcher) Close() error {
	err := x.w.Close()
	<-x.done
	return err
}

// Watch subscribes to changes in dir and returns the function that stops
// it. onChange is called (on the watcher's goroutine: it must not block)
// on any change: a write, or with renamed true when a name of the
// directory comes, goes or moves (create, rename, remove: a rotation,
// which a tailer held back by the sink must not miss). Watch fails when
// dir cannot be watched (it does not exist yet, say): the tailer polls.
func (x *Watcher) Watch(dir string, onChange func(renamed bool)) (func(), error) {
	dir = filepath.Clean(dir)
	w := &watch{onChange: onChange}
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.subs[dir]) == 0 {
		if err := x.w.Add(dir); err != nil {
			return nil, err
		}
		x.subs[dir] = map[*watch]struct{}{}
	}
	x.subs[dir][w] = struct{}{}
	stop := func() {
		x.mu.Lock()
		defer x.mu.Unlock()
		subs := x.subs[dir]
		if _, ok := subs[w]; !ok {
			return
		}
		delete(subs, w)
		if len(subs) == 0 {
			delete(x.subs, dir)
			_ = x.w.Remove(dir) // fails when dir is gone, and then inotify has dropped it already
		}
	}
	return stop, nil
}

func (x *Watcher) run() {
	defer close(x.done)
	for {
		select {
		case ev, ok := <-x.w.Events:
			if !ok {
				return
			}
			x.mu.Lock()
			// An event names a file of a watched directory, or the
			// directory itself (removed, renamed).
			renamed := ev.Op&(fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0
			for _, d := range []string{filepath.Dir(ev.Name), filepath.Clean(ev.Name)} {
				for w := range x.subs[d] {
					w.onChange(renamed)
				}
			}
			x.mu.Unlock()
		case err, ok := <-x.w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: every tailer looks.
				x.mu.Lock()
				for _, subs := range x.subs {
					for w := range subs {
						w.onChange(true)
					}
				}
				x.mu.Unlock()
				continue
			}
			x.log.Warn("inotify", zap.Error(err))
		}
	}
}
