package journal

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// rootPoll is how often roots that do not exist (yet), or whose watch was
// lost because they were removed, are looked for again.
const rootPoll = time.Second

// Watcher tells subscribers that the journal may have changed, so that they
// call Reader.Next again. It watches the roots and their subdirectories (the
// machine-id directories) with inotify: journald writes through a shared
// mapping, which raises no inotify event, so after writing it ftruncate()s
// the file to its own size precisely to raise IN_MODIFY; files created,
// renamed (rotation) and deleted (vacuum) raise events in the directory.
// Subdirectories created later are watched as they appear. One Watcher per
// process can serve any number of Readers.
type Watcher struct {
	fw    *fsnotify.Watcher
	roots []string

	mu   sync.Mutex
	subs map[int]func()
	next int

	done chan struct{}
	wg   sync.WaitGroup
}

// NewWatcher watches dirs. A root that does not exist is looked for every
// second and watched once it appears.
func NewWatcher(dirs []string) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &Watcher{fw: fw, roots: cleanAll(dirs), subs: map[int]func(){}, done: make(chan struct{})}
	for _, d := range w.roots {
		if err := w.addRoot(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fw.Close()
			return nil, err
		}
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

func (w *Watcher) addRoot(root string) error {
	if err := w.fw.Add(root); err != nil {
		return err
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil // watched; the subdirectories are found as events come
	}
	for _, ent := range ents {
		if ent.IsDir() {
			w.fw.Add(filepath.Join(root, ent.Name())) //nolint:errcheck // an unreadable one is skipped
		}
	}
	return nil
}

// Subscribe returns a channel that receives a value whenever the journal
// may have changed (capacity 1: changes while one is pending fold into it),
// and a function that ends the subscription.
func (w *Watcher) Subscribe() (ch <-chan struct{}, cancel func()) {
	c := make(chan struct{}, 1)
	return c, w.OnChange(func() {
		select {
		case c <- struct{}{}:
		default:
		}
	})
}

// OnChange calls f whenever the journal may have changed, from the
// watcher's goroutine (f must not block), and returns a function that ends
// the subscription. A reader without a goroutine of its own while it waits
// is woken this way.
func (w *Watcher) OnChange(f func()) (cancel func()) {
	w.mu.Lock()
	id := w.next
	w.next++
	w.subs[id] = f
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.subs, id)
		w.mu.Unlock()
	}
}

func (w *Watcher) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range w.subs {
		f()
	}
}

func (w *Watcher) run() {
	defer w.wg.Done()
	tick := time.NewTicker(rootPoll)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) && slices.Contains(w.roots, filepath.Dir(ev.Name)) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					w.fw.Add(ev.Name) //nolint:errcheck // best effort, as in addRoot
				}
			}
			w.notify()
		case _, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			// An overflow loses events: have the readers look anyway.
			w.notify()
		case <-tick.C:
			w.checkRoots()
		}
	}
}

// checkRoots watches again each root that is not watched but exists.
func (w *Watcher) checkRoots() {
	watched := w.fw.WatchList()
	for _, root := range w.roots {
		if slices.Contains(watched, root) {
			continue
		}
		if w.addRoot(root) == nil {
			w.notify()
		}
	}
}

// Close stops watching. Subscribers' channels are not closed; they just
// receive nothing more.
func (w *Watcher) Close() error {
	select {
	case <-w.done:
		return nil
	default:
	}
	close(w.done)
	err := w.fw.Close()
	w.wg.Wait()
	return err
}

func cleanAll(dirs []string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = filepath.Clean(d)
	}
	return out
}
