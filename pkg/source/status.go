package source

import (
	"os"
	"sort"
	"strings"
	"time"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/podman"
	"github.com/podtail/podtail/pkg/source/file"
)

// The status page's view of the sources (Scheduler.Status): a snapshot of
// every container's output and every open log file, with its labels, its
// state, and how far delivery trails it. Everything is read when asked,
// from what the readers publish anyway (positions, the files' sizes) and
// from a few values they publish once per read (see ContainerOutput.readTo,
// JournalOutput.readPub, file.FileStatus): nothing is kept per line.

// Kinds of source.
const (
	KindContainer = "container" // a container's stdout and stderr
	KindFile      = "file"      // one log file of a directory
	KindDir       = "directory" // a log directory with no file open
)

// States of a source.
const (
	StateReading  = "reading"  // following its log as it grows
	StateWaiting  = "waiting"  // its log is not there yet
	StateDraining = "draining" // its container stopped: reading what is left
	StateDone     = "done"     // read to its end (its container stopped)
	StateFailed   = "failed"   // stopped by an error (Error says which)
)

// Status is one source: a container's output, or one log file.
type Status struct {
	Key  string // container:<id>, file:<dir>#<fingerprint>, or dir:<path>
	Kind string // KindContainer, KindFile, KindDir
	// Container and ID name the container (for a file, the one whose
	// mount it is; empty for files.static).
	Container, ID string
	// Path is where it is read: the k8s-file log, "journal", the file.
	Path string
	// Labels: tenant, application, version and stream ("stdout+stderr"
	// for a container's output, "file" for files).
	Tenant, App, Version, Stream string
	LogDriver                    string // a container's; "" for files
	State                        string
	// Read and Acked are the bytes read and acknowledged by Loki (for a
	// container's k8s-file log and plain files, offsets in the current
	// file; for the journal, MESSAGE bytes since podtail started).
	Read, Acked int64
	// LagBytes is what was written and Loki has not acknowledged: the file's
	// size past the acknowledged offset (for the journal, what was read and
	// not acknowledged: the journal's unread part has no byte count).
	LagBytes int64
	// Lag is how long the oldest line not acknowledged has waited: now
	// minus the time of the oldest entry in flight, or, with nothing in
	// flight but bytes not read yet, now minus the file's last write (a
	// lower bound). 0 when LagBytes is 0.
	Lag time.Duration
	// Error is what stopped the source, or why its lines are not shipped
	// (a tenant outside limits.tenants).
	Error string
	// Since is when the source ended (done or failed).
	Since time.Time
}

// Status returns every source, ordered by tenant, then container, then path.
// Safe from any goroutine; it takes the scheduler's lock only to list them.
func (s *Scheduler) Status() []Status {
	type one struct {
		key string
		r   *run
		end *endedRun
	}
	s.mu.Lock()
	all := make([]one, 0, len(s.running)+len(s.stopped))
	for key, r := range s.running {
		all = append(all, one{key: key, r: r})
	}
	for key, e := range s.stopped {
		if _, ok := s.running[key]; !ok {
			e := e
			all = append(all, one{key: key, r: e.run, end: &e})
		}
	}
	s.mu.Unlock()

	now := time.Now()
	var out []Status
	for _, o := range all {
		var rows []Status
		switch src := o.r.src.(type) {
		case *ContainerOutput:
			rows = []Status{src.status(now)}
		case *JournalOutput:
			rows = []Status{src.status(now)}
		case *file.Dir:
			rows = dirStatus(o.key, o.r, src, now)
		default:
			continue // a test's
		}
		for i := range rows {
			r := &rows[i]
			if o.end != nil {
				r.State, r.Since = StateDone, o.end.at
				if o.end.err != nil {
					r.State, r.Error = StateFailed, o.end.err.Error()
				}
			}
			if r.Error == "" && !s.out.Limits.Allowed(r.Tenant) {
				r.Error = "tenant " + r.Tenant + " is not in limits.tenants: its lines are dropped (" + pipeline.DropTenantNotAllowed + ")"
			}
		}
		out = append(out, rows...)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Tenant != b.Tenant {
			return a.Tenant < b.Tenant
		}
		if a.Container != b.Container {
			return a.Container < b.Container
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Path < b.Path
	})
	return out
}

// endedRun is a source that ended while its target is still wanted.
type endedRun struct {
	run *run
	err error
	at  time.Time
}

// containerStatus is what a container's output row shares.
func containerStatus(t discovery.Target, path string) Status {
	return Status{
		Key: Key(t.ID), Kind: KindContainer, Container: t.Name, ID: t.ID, Path: path,
		Tenant: t.Tenant, App: t.App, Version: t.Version, Stream: Stdout + "+" + Stderr, LogDriver: t.LogDriver,
	}
}

// status is the row of a container's k8s-file log.
func (c *ContainerOutput) status(now time.Time) Status {
	st := containerStatus(c.target, c.target.LogPath)
	if st.LogDriver == "" {
		st.LogDriver = podman.LogDriverFile
	}
	f := c.file.Load()
	switch {
	case f == nil && c.draining.Load():
		st.State = StateDone // gone before its log could be opened, or not opened yet
	case f == nil:
		st.State = StateWaiting
	case c.draining.Load():
		st.State = StateDraining
	default:
		st.State = StateReading
	}
	st.Read = c.readTo.Load()
	var fi os.FileInfo
	if f != nil {
		fi, _ = f.Stat() // through the descriptor: a removed container's log is still read
	}
	if fi == nil {
		fi, _ = os.Stat(c.target.LogPath)
	}
	if p, ok := c.store.Get(c.key); ok && (p.Inode == 0 || p.Inode == c.inode.Load()) {
		st.Acked = max(p.Offset, p.Delivered)
	}
	if fi != nil {
		st.LagBytes = max(fi.Size()-st.Acked, 0)
		if f == nil {
			st.LagBytes = 0 // not opened: nothing of it is this reader's yet
		}
	}
	st.Lag = lag(st.LagBytes, c.cur.Load(), fi, now)
	return st
}

// status is the row of a container's output in the journal.
func (o *JournalOutput) status(now time.Time) Status {
	st := containerStatus(o.target, "journal")
	st.State = StateReading
	if o.draining.Load() {
		st.State = StateDraining
	}
	st.Read = o.readPub.Load()
	o.mu.Lock()
	st.Acked = o.ackedPub.Load()
	idle := len(o.sent) == 0 && len(o.chains) == 0
	o.mu.Unlock()
	if idle {
		// Nothing in flight nor being joined: what was read and not sent
		// (delivered before a restart, passed over) needs no delivery.
		st.Acked = max(st.Acked, st.Read)
	}
	st.LagBytes = max(st.Read-st.Acked, 0)
	st.Lag = lag(st.LagBytes, o.stream, nil, now)
	return st
}

// dirStatus is a directory's rows: one per open file, or one for the
// directory while it has none open.
func dirStatus(key string, r *run, d *file.Dir, now time.Time) []Status {
	t, dir := r.target, strings.TrimPrefix(key, "dir:")
	base := Status{Container: t.Name, ID: t.ID, Tenant: r.tenant, App: t.App, Version: t.Version, Stream: "file"}
	if strings.HasPrefix(t.ID, "static:") {
		base.Container, base.ID = "", "" // files.static: no container
	}
	if v := r.dir.Labels[labels.Application]; v != "" {
		base.App = v // the path rule's
	}
	if v, ok := r.dir.Labels[labels.Version]; ok {
		base.Version = v
	}
	state := StateReading
	if d.Draining() {
		state = StateDraining
	}
	files := d.Files()
	if len(files) == 0 {
		row := base
		row.Key, row.Kind, row.Path, row.State = key, KindDir, dir, state
		return []Status{row}
	}
	rows := make([]Status, 0, len(files))
	for _, f := range files {
		row := base
		row.Key, row.Kind, row.Path, row.State = f.Key, KindFile, f.Path, state
		if v := f.Labels[labels.Application]; v != "" {
			row.App = v
		}
		if v, ok := f.Labels[labels.Version]; ok {
			row.Version = v
		}
		if v := f.Labels[labels.Stream]; v != "" {
			row.Stream = v
		}
		row.Read, row.Acked = f.Read, f.Acked
		if f.Size >= 0 {
			row.LagBytes = max(f.Size-f.Acked, 0)
		} else {
			row.LagBytes = max(f.Read-f.Acked, 0)
		}
		row.Lag = lagAt(row.LagBytes, f.Oldest, f.ModTime, now)
		rows = append(rows, row)
	}
	return rows
}

// lag is how long the oldest line not acknowledged has waited (see
// Status.Lag); fi is the log's, when it has one.
func lag(lagBytes int64, s *pipeline.Stream, fi os.FileInfo, now time.Time) time.Duration {
	var oldest, mtime time.Time
	if s != nil {
		oldest, _ = s.Oldest()
	}
	if fi != nil {
		mtime = fi.ModTime()
	}
	return lagAt(lagBytes, oldest, mtime, now)
}

func lagAt(lagBytes int64, oldest, mtime, now time.Time) time.Duration {
	switch {
	case lagBytes == 0:
		return 0
	case !oldest.IsZero():
		return max(now.Sub(oldest), 0)
	case !mtime.IsZero():
		return max(now.Sub(mtime), 0)
	}
	return 0
}
