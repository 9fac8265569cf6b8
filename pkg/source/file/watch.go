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
	subs map[string]map[chan struct{}]struct{} // directory -> its tailers' wake channels
	done chan struct{}
}

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
	x := &Watcher{w: w, log: log, subs: map[string]map[chan struct{}]struct{}{}, done: make(chan struct{})}
	go x.run()
	return x, nil
}

// Close stops the watcher; channels handed out get no more pokes.
func (x *Watcher) Close() error {
	err := x.w.Close()
	<-x.done
	return err
}

// Watch returns a channel poked (1-buffered, so a burst is one poke) when
// something in dir changes, and the function that stops it. It fails when
// dir cannot be watched (it does not exist yet, say): the tailer polls.
func (x *Watcher) Watch(dir string) (<-chan struct{}, func(), error) {
	dir = filepath.Clean(dir)
	ch := make(chan struct{}, 1)
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.subs[dir]) == 0 {
		if err := x.w.Add(dir); err != nil {
			return nil, nil, err
		}
		x.subs[dir] = map[chan struct{}]struct{}{}
	}
	x.subs[dir][ch] = struct{}{}
	stop := func() {
		x.mu.Lock()
		defer x.mu.Unlock()
		subs := x.subs[dir]
		if _, ok := subs[ch]; !ok {
			return
		}
		delete(subs, ch)
		if len(subs) == 0 {
			delete(x.subs, dir)
			_ = x.w.Remove(dir) // fails when dir is gone, and then inotify has dropped it already
		}
	}
	return ch, stop, nil
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
			for _, d := range []string{filepath.Dir(ev.Name), filepath.Clean(ev.Name)} {
				for ch := range x.subs[d] {
					poke(ch)
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
					for ch := range subs {
						poke(ch)
					}
				}
				x.mu.Unlock()
				continue
			}
			x.log.Warn("inotify", zap.Error(err))
		}
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
