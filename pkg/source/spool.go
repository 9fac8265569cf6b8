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
	"github.com/podtail/podtail/pkg/podman"
	"github.com/podtail/podtail/pkg/source/positions"
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
// A hard link needs the log and data_dir on one filesystem and one mount,
// which the sidecar, the quadlet and the sandboxed systemd unit do not give
// (each mounts data_dir on its own). There the spool copies instead: when a
// container is removed while its reader still holds the deleted log open, the
// part not yet acknowledged is copied into the spool (see
// ContainerOutput.SpoolCopy). That costs a copy of the backlog, once, and only
// for containers removed with output undelivered.
type Spool struct {
	dir string
	log *zap.Logger

	mu     sync.Mutex
	linked map[string]discovery.Target // by container ID; LogPath is the original log
	copies bool                        // linking cannot work here: copy on removal instead
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
		if _, err := os.Stat(sp.logPath(id)); err != nil && s.Target.LogDriver != podman.LogDriverJournal {
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
// container has not started) is tried again on the next call. A journald
// container's output stays in the journal after its removal: only the
// target is recorded, so that a podtail restarted after the removal still
// reads what it had not delivered (the soak lost such tails).
func (sp *Spool) Keep(t discovery.Target) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if _, ok := sp.linked[t.ID]; ok {
		return
	}
	if t.LogDriver == podman.LogDriverJournal {
		if err := sp.record(t); err != nil {
			sp.log.Warn("spool: cannot record a container", zap.String("container", t.Name), zap.Error(err))
		}
		return
	}
	if sp.copies || t.LogPath == "" {
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
		sp.copies = true
		sp.log.Info("spool: container logs cannot be hard-linked into data_dir (another filesystem or mount); "+
			"the undelivered output of a removed container is copied there instead",
			zap.String("log", t.LogPath), zap.String("spool", sp.dir), zap.Error(err))
		return
	default:
		sp.log.Warn("spool: cannot link a container log", zap.String("log", t.LogPath), zap.Error(err))
		return
	}
	if err := sp.record(t); err != nil {
		_ = os.Remove(link)
		sp.log.Warn("spool: cannot record a container", zap.String("container", t.Name), zap.Error(err))
	}
}

// record writes what is needed to read t's spooled log without Podman.
// sp.mu must be held.
func (sp *Spool) record(t discovery.Target) error {
	b, _ := json.Marshal(spooled{Target: t})
	if err := positions.WriteFile(sp.metaPath(t.ID), b); err != nil {
		return err
	}
	sp.linked[t.ID] = t
	return nil
}

// copyOnRemoval reports whether a removed container's log must be copied
// (links are not possible here) and is not in the spool yet.
func (sp *Spool) copyOnRemoval(id string) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	_, ok := sp.linked[id]
	return sp.copies && !ok
}

// Copy spools the log of t, a container just removed, through copy (which
// writes the copy to the path given), and records it.
func (sp *Spool) Copy(t discovery.Target, copy func(dst string) error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if _, ok := sp.linked[t.ID]; ok {
		return
	}
	if err := copy(sp.logPath(t.ID)); err != nil {
		sp.log.Warn("spool: cannot keep a removed container's output; it is delivered only if podtail keeps running",
			zap.String("container", t.Name), zap.Error(err))
		_ = os.Remove(sp.logPath(t.ID))
		return
	}
	if err := sp.record(t); err != nil {
		sp.log.Warn("spool: cannot record a container", zap.String("container", t.Name), zap.Error(err))
	}
}

// Gone returns the spooled containers not among present, each as a target
// that reads the spooled link (the original log is gone, or soon will be),
// or for journald the journal.
func (sp *Spool) Gone(present map[string]bool) []discovery.Target {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var out []discovery.Target
	for id, t := range sp.linked {
		if !present[id] {
			if t.LogDriver != podman.LogDriverJournal {
				t.LogPath = sp.logPath(id)
			}
			t.Running = false
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
