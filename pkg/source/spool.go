package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
)

// Spool keeps the output of containers that Podman removes before Loki has
// it all. `podman rm` deletes a container's k8s-file log; while podtail has
// the log open it can still read it, but after a restart (or a crash) during
// a Loki outage whatever was not delivered would be gone. So each container's
// log gets a hard link in data_dir/spool when its reader starts: no copying,
// no cost while the container lives, and after a removal the link keeps the
// file until its last line is acknowledged, across restarts, whereupon the
// link is removed.
//
// A hard link needs the log and data_dir on one filesystem and mount; when
// they are not (EXDEV), spooling is off, said once in the log.
type Spool struct {
	dir string
	log *zap.Logger

	mu     sync.Mutex
	linked map[string]discovery.Target // by container ID; LogPath is the original log
	off    bool                        // linking cannot work here: warned once
}

// spooled is what is stored beside each link: enough to read the log again
// with the container gone.
type spooled struct {
	Target discovery.Target `json:"target"`
}

// OpenSpool opens (creating) dir and loads what is spooled there.
func OpenSpool(dir string, log *zap.Logger) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	sp := &Spool{dir: dir, log: log, linked: map[string]discovery.Target{}}
	metas, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	for _, m := range metas {
		b, err := os.ReadFile(m)
		var s spooled
		if err == nil {
			err = json.Unmarshal(b, &s)
		}
		id := strings.TrimSuffix(filepath.Base(m), ".json")
		if err != nil || s.Target.ID != id {
			log.Error("spool: unreadable entry left alone", zap.String("file", m), zap.Error(err))
			continue
		}
		if _, err := os.Stat(sp.logPath(id)); err != nil {
			_ = os.Remove(m) // its log is gone: nothing left to deliver
			continue
		}
		sp.linked[id] = s.Target
	}
	return sp, nil
}

func (sp *Spool) logPath(id string) string  { return filepath.Join(sp.dir, id+".log") }
func (sp *Spool) metaPath(id string) string { return filepath.Join(sp.dir, id+".json") }

// Keep links t's log into the spool, once. A log not there yet (the
// container has not started) is tried again on the next call.
func (sp *Spool) Keep(t discovery.Target) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.off || t.LogPath == "" {
		return
	}
	if _, ok := sp.linked[t.ID]; ok {
		return
	}
	link := sp.logPath(t.ID)
	err := os.Link(t.LogPath, link)
	if errors.Is(err, os.ErrExist) {
		// Left by an earlier run: keep it if it is this log.
		a, errA := os.Stat(t.LogPath)
		b, errB := os.Stat(link)
		if errA != nil || errB != nil || !os.SameFile(a, b) {
			_ = os.Remove(link)
			err = os.Link(t.LogPath, link)
		} else {
			err = nil
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		return
	case errors.Is(err, syscall.EXDEV), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		sp.off = true
		sp.log.Warn("spool off: container logs cannot be hard-linked into data_dir (another filesystem or mount?); "+
			"a container removed while Loki is down loses what was not delivered if podtail restarts meanwhile",
			zap.String("log", t.LogPath), zap.String("spool", sp.dir), zap.Error(err))
		return
	default:
		sp.log.Warn("spool: cannot link a container log", zap.String("log", t.LogPath), zap.Error(err))
		return
	}
	b, _ := json.Marshal(spooled{Target: t})
	if err := writeFileAtomic(sp.metaPath(t.ID), b); err != nil {
		_ = os.Remove(link)
		sp.log.Warn("spool: cannot record a container", zap.String("container", t.Name), zap.Error(err))
		return
	}
	sp.linked[t.ID] = t
}

// Gone returns the spooled containers not among present, each as a target
// that reads the spooled link (the original log is gone, or soon will be).
func (sp *Spool) Gone(present map[string]bool) []discovery.Target {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var out []discovery.Target
	for id, t := range sp.linked {
		if !present[id] {
			t.LogPath, t.Running = sp.logPath(id), false
			out = append(out, t)
		}
	}
	return out
}

// Release removes a container's link once nothing of it is left to deliver.
func (sp *Spool) Release(id string) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if _, ok := sp.linked[id]; !ok {
		return
	}
	delete(sp.linked, id)
	_ = os.Remove(sp.logPath(id))
	_ = os.Remove(sp.metaPath(id))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
