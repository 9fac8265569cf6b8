package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// catchHold is how long a caught log waits for its reader: Podman's create
// event arrives ~200 ms late here, more under load; a container never
// collected (no tenant) has its log let go after this.
const catchHold = 30 * time.Second

// Catcher opens each container's k8s-file log the moment conmon creates it,
// before Podman's create event reaches podtail. A `--rm` container that
// lives 100 ms is removed, and its log deleted, before that event arrives
// (seen here at 0.5 s on a loaded machine): its reader then finds nothing to
// open. Held open by the Catcher, the deleted log can still be read to its
// end. Logs are held until a reader takes them or catchHold passes.
type Catcher struct {
	log   *zap.Logger
	ready chan struct{} // closed once the watch is up (for tests)

	mu   sync.Mutex
	held map[string]caught // by container ID
}

type caught struct {
	f    *os.File
	path string
	at   time.Time
}

// NewCatcher returns a Catcher; Run makes it catch.
func NewCatcher(log *zap.Logger) *Catcher {
	return &Catcher{log: log, ready: make(chan struct{}), held: map[string]caught{}}
}

// Take hands over the log caught for container id at path, or nil.
func (c *Catcher) Take(id, path string) *os.File {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.held[id]
	if !ok || h.path != path {
		return nil
	}
	delete(c.held, id)
	return h.f
}

// Run watches dir, Podman's overlay-containers directory as podtail sees
// it, until ctx ends. A directory that is not there (another storage driver,
// rootless storage elsewhere) means there is nothing to catch.
func (c *Catcher) Run(ctx context.Context, dir string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			c.log.Debug("no container storage to watch; short-lived containers are caught by events only", zap.String("dir", dir))
			return nil
		}
		return err
	}
	defer c.releaseAll()
	close(c.ready)
	watched := map[string]time.Time{} // container dirs and their userdata, by path
	tick := time.NewTicker(catchHold / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			c.log.Warn("watching container storage", zap.Error(err))
		case <-tick.C:
			c.expire(w, watched)
		case ev := <-w.Events:
			if !ev.Has(fsnotify.Create) {
				continue
			}
			rel, err := filepath.Rel(dir, ev.Name)
			if err != nil {
				continue
			}
			parts := strings.Split(rel, string(filepath.Separator))
			id := parts[0]
			switch len(parts) {
			case 1: // a new container: its userdata and log follow at once
				c.follow(w, watched, ev.Name, filepath.Join(ev.Name, "userdata"))
			case 2:
				if parts[1] == "userdata" {
					c.follow(w, watched, ev.Name)
				}
			case 3:
				if parts[1] == "userdata" && parts[2] == "ctr.log" {
					c.hold(id, ev.Name)
					for _, p := range []string{filepath.Dir(ev.Name), filepath.Dir(filepath.Dir(ev.Name))} {
						_ = w.Remove(p)
						delete(watched, p)
					}
				}
			}
		}
	}
}

// follow watches dirs, and catches a log that was created before the watch.
func (c *Catcher) follow(w *fsnotify.Watcher, watched map[string]time.Time, dirs ...string) {
	for _, d := range dirs {
		if err := w.Add(d); err == nil {
			watched[d] = time.Now()
		}
	}
	last := dirs[len(dirs)-1]
	if filepath.Base(last) == "userdata" {
		log := filepath.Join(last, "ctr.log")
		if _, err := os.Stat(log); err == nil {
			c.hold(filepath.Base(filepath.Dir(last)), log)
		}
	}
}

func (c *Catcher) hold(id, path string) {
	f, err := os.Open(path)
	if err != nil {
		return // gone already, or not readable: the reader will say so
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.held[id]; ok {
		old.f.Close()
	}
	c.held[id] = caught{f: f, path: path, at: time.Now()}
}

// expire lets go of logs and watches older than catchHold.
func (c *Catcher) expire(w *fsnotify.Watcher, watched map[string]time.Time) {
	cut := time.Now().Add(-catchHold)
	for p, at := range watched {
		if at.Before(cut) {
			_ = w.Remove(p)
			delete(watched, p)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, h := range c.held {
		if h.at.Before(cut) {
			h.f.Close()
			delete(c.held, id)
		}
	}
}

func (c *Catcher) releaseAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, h := range c.held {
		h.f.Close()
		delete(c.held, id)
	}
}
