package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
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
//
// It uses inotify directly, for creations only: a general-purpose watcher
// also reports every write into a watched directory, which in a container's
// userdata is every line the container prints (and fsnotify v1.10.1
// panicked in Remove here once, its maps out of step after a watched
// directory was deleted).
func (c *Catcher) Run(ctx context.Context, dir string) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	in := os.NewFile(uintptr(fd), "inotify") // non-blocking: reads go through Go's poller
	defer in.Close()
	const mask = unix.IN_CREATE | unix.IN_ONLYDIR
	rootWd, err := unix.InotifyAddWatch(fd, dir, mask)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			c.log.Debug("no container storage to watch; short-lived containers are caught by events only", zap.String("dir", dir))
			return nil
		}
		return fmt.Errorf("inotify %s: %w", dir, err)
	}
	defer c.releaseAll()
	// Closing the descriptor is what ends a Read waiting for events.
	defer context.AfterFunc(ctx, func() { in.Close() })()
	close(c.ready)

	root := int32(rootWd)
	paths := map[int32]string{root: dir} // watch descriptor -> directory
	since := map[int32]time.Time{}       // container directories' watches, for expiry
	watch := func(path string) {
		if wd, err := unix.InotifyAddWatch(fd, path, mask); err == nil && int32(wd) != root {
			paths[int32(wd)] = path
			since[int32(wd)] = time.Now()
		}
	}
	unwatch := func(path string) {
		for wd, p := range paths {
			if p == path && wd != root {
				_, _ = unix.InotifyRmWatch(fd, uint32(wd)) // EINVAL when already gone: fine
				delete(since, wd)
			}
		}
	}
	buf := make([]byte, 64<<10)
	for {
		_ = in.SetReadDeadline(time.Now().Add(catchHold / 3))
		n, err := in.Read(buf)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.expire(fd, since)
			continue
		}
		if err != nil {
			return fmt.Errorf("inotify %s: %w", dir, err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			switch {
			case ev.Mask&unix.IN_IGNORED != 0:
				delete(paths, ev.Wd)
				delete(since, ev.Wd)
				continue
			case ev.Mask&unix.IN_Q_OVERFLOW != 0:
				c.log.Warn("container storage watch overflowed; some short-lived containers may be missed")
				continue
			case ev.Mask&unix.IN_CREATE == 0 || paths[ev.Wd] == "":
				continue
			}
			full := filepath.Join(paths[ev.Wd], name)
			rel, err := filepath.Rel(dir, full)
			if err != nil {
				continue
			}
			parts := strings.Split(rel, string(filepath.Separator))
			switch {
			case len(parts) == 1: // a new container: its userdata and log follow at once
				watch(full)
				c.follow(watch, filepath.Join(full, "userdata"))
			case len(parts) == 2 && parts[1] == "userdata":
				c.follow(watch, full)
			case len(parts) == 3 && parts[1] == "userdata" && parts[2] == "ctr.log":
				c.hold(parts[0], full)
				unwatch(filepath.Dir(full))
				unwatch(filepath.Dir(filepath.Dir(full)))
			}
		}
	}
}

// follow watches a container's userdata directory, and catches a log that
// was created before the watch.
func (c *Catcher) follow(watch func(string), userdata string) {
	if _, err := os.Stat(userdata); err != nil {
		return // not yet: its creation in the container's directory brings us back
	}
	watch(userdata)
	if log := filepath.Join(userdata, "ctr.log"); fileExists(log) {
		c.hold(filepath.Base(filepath.Dir(userdata)), log)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
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
	c.log.Debug("caught a container's log as it was created", zap.String("id", id[:min(12, len(id))]))
}

// expire lets go of logs and watches older than catchHold.
func (c *Catcher) expire(fd int, since map[int32]time.Time) {
	cut := time.Now().Add(-catchHold)
	for wd, at := range since {
		if at.Before(cut) {
			_, _ = unix.InotifyRmWatch(fd, uint32(wd))
			delete(since, wd)
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
