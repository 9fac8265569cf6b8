package file

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Listing the directory (design.md, steps 1-2): through a descriptor kept
// open between cycles, every stat relative to it; which inodes were seen
// finished (and as what), and which are refused.

const (
	// reopenDirEvery: the directory stays open between cycles for this
	// long, then is opened again from / (see Dir.openDir).
	reopenDirEvery = time.Second
	// listEvery is the least time between two listings while a backlog is
	// read (cycles follow each other every readSlice then). Listing every
	// 20 ms was a tenth of podtail's CPU with 500 directories held back by
	// Loki; lumberjack's backups live ~160 ms at full speed, so each is
	// still seen a few times.
	listEvery = 50 * time.Millisecond
	// listEveryWatched is listEvery for a directory inotify watches: the
	// listing while a backlog is read was still a twentieth of podtail's CPU
	// at 50 ms.
	listEveryWatched = time.Second
	gzSuffix         = ".gz"
)

// listing is what a Dir keeps of its directory between cycles.
type listing struct {
	// df is the directory, opened at dfAt; dirfd is its descriptor (-1
	// when not open): entries are listed, stat'ed and opened relative to
	// it, never by path.
	df    *os.File
	dfAt  time.Time
	dirfd int
	// listedAt is when the directory was last listed.
	listedAt time.Time
	// seen holds inodes finished or not ours, with their size and mtime then:
	// a finished file never changes, so a change means the inode was freed
	// and reused by a new file (lumberjack deletes a backup and creates the
	// next file at once, and the new file often gets the freed inode).
	seen map[uint64]stamp
	// refused holds inodes of the directory not read (see refusal), each
	// counted and logged once, while an entry of the directory has it: a
	// refused file renamed is still refused, and a hard link stays refused
	// when its other name is removed (its content was someone else's).
	refused map[uint64]string
	// unopened: the last listing left a file written to in the last second
	// unopened (not one whole line yet, or no open-file slot). Its writes
	// end no wait, and a fast rotator may rename and delete it within
	// heldBackRelist, so readers held back wait readSlice at most.
	unopened bool
}

func newListing() listing {
	return listing{seen: map[uint64]stamp{}, refused: map[uint64]string{}, dirfd: -1}
}

// due reports whether a cycle reading a backlog should list the directory
// first. inotify says when a name changes (relist): listing is only a safety
// net then. (A file not yet opened, not a whole line yet, is not a name
// change when its line ends: it is looked for often.)
func (l *listing) due(now time.Time, watched bool) bool {
	every := listEvery
	if watched && !l.unopened {
		every = listEveryWatched
	}
	return now.Sub(l.listedAt) >= every
}

type candidate struct {
	name  string
	ino   uint64
	mtime time.Time
	gz    bool
}

type stamp struct {
	size  int64
	mtime time.Time
}

// list lists the directory and returns the files to open, older first (a
// backup's lines come before the live file's); ok is false when it could
// not be listed (said once; the open files are read all the same).
func (d *Dir) list(now time.Time) (fresh []candidate, ok bool) {
	d.ls.listedAt = now
	df, err := d.openDir(now)
	if err != nil {
		var re *refusedError
		if errors.As(err, &re) {
			if !d.warned["refused"] {
				d.warned["refused"] = true
				d.metrics.refused.WithLabelValues(d.cfg.Tenant, re.reason).Inc()
				d.log.Warn("log directory not read: its path goes through a symlink, which podtail does not follow (give Podman the real path)",
					zap.String("symlink", re.path))
			}
		} else if !d.warned["readdir"] {
			d.warned["readdir"] = true
			d.log.Warn("cannot read log directory; retrying", zap.Error(err))
		}
		return nil, false
	}
	delete(d.warned, "readdir")
	delete(d.warned, "refused")
	entries, err := df.ReadDir(-1)
	if err != nil {
		d.log.Warn("cannot list log directory; retrying", zap.Error(err))
		d.closeDir()
		return nil, false
	}
	present := map[uint64]bool{}
	for _, e := range entries {
		name := e.Name()
		if !d.reads(name) {
			continue
		}
		gz := strings.HasSuffix(name, gzSuffix)
		st, err := lstatAt(d.ls.dirfd, name)
		if err != nil {
			continue
		}
		ino := st.ino
		present[ino] = true
		if d.readers[ino] != nil {
			continue
		}
		if _, ok := d.ls.refused[ino]; ok {
			continue
		}
		if reason := refusal(st); reason != "" {
			d.refuse(name, ino, reason, st.mode)
			continue
		}
		if old, ok := d.ls.seen[ino]; ok {
			if old == st.stamp() {
				continue
			}
			delete(d.ls.seen, ino) // a new file on a reused inode
		}
		fresh = append(fresh, candidate{name: name, ino: ino, mtime: st.mtime, gz: gz})
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].mtime.Before(fresh[j].mtime) })
	gone := func(ino uint64) bool { return !present[ino] }
	maps.DeleteFunc(d.ls.seen, func(ino uint64, _ stamp) bool { return gone(ino) })
	maps.DeleteFunc(d.ls.refused, func(ino uint64, _ string) bool { return gone(ino) })
	maps.DeleteFunc(d.id.keyOf, func(ino uint64, _ string) bool { return gone(ino) })
	return fresh, true
}

// reads reports whether a file of the directory is read, by name:
// Config.Match, or without one *.log files and their *.log.gz backups.
func (d *Dir) reads(name string) bool {
	if d.cfg.Match != nil {
		return d.cfg.Match(name)
	}
	return strings.HasSuffix(name, ".log") || strings.HasSuffix(name, ".log"+gzSuffix)
}

// refuse records that the entry name (inode ino) is not read, counting it
// and saying so once.
func (d *Dir) refuse(name string, ino uint64, reason string, mode fs.FileMode) {
	d.ls.refused[ino] = reason
	d.metrics.refused.WithLabelValues(d.cfg.Tenant, reason).Inc()
	msg := "not a regular file; not read"
	if reason == refusedHardlink {
		msg = "file has more than one link (it may be another tenant's or the host's); not read"
	}
	d.log.Warn(msg, zap.String("file", name), zap.String("reason", reason), zap.String("mode", mode.String()))
}

// markSeen remembers a finished or ignored file as it is now: by its open
// descriptor f, else by name in the directory.
func (d *Dir) markSeen(ino uint64, f *os.File, name string) {
	var st fileStat
	var err error
	switch {
	case f != nil:
		st, err = fstat(f)
	case d.ls.dirfd >= 0:
		st, err = lstatAt(d.ls.dirfd, name)
	default:
		return
	}
	if err == nil && st.ino == ino {
		d.ls.seen[ino] = st.stamp()
	}
}

// openDir returns the directory, opened one component at a time from /
// without following symlinks (see openDir), and listed from its start.
// While there is a backlog a cycle runs every readSlice, and opening the
// path again each time was a tenth of podtail's CPU with 500 directories
// (an openat and a close per component), so the descriptor is kept for
// reopenDirEvery. A descriptor is safe to keep: a component swapped for a
// symlink meanwhile does not change what it refers to. Opening again
// notices a directory removed and created anew.
func (d *Dir) openDir(now time.Time) (*os.File, error) {
	if d.ls.df != nil && now.Sub(d.ls.dfAt) < reopenDirEvery {
		if _, err := d.ls.df.Seek(0, io.SeekStart); err == nil {
			return d.ls.df, nil
		}
	}
	d.closeDir()
	df, err := openDir(d.cfg.Dir)
	if err != nil {
		return nil, err
	}
	d.ls.df, d.ls.dfAt, d.ls.dirfd = df, now, int(df.Fd())
	return df, nil
}

func (d *Dir) closeDir() {
	if d.ls.df != nil {
		d.ls.df.Close()
	}
	d.ls.df, d.ls.dirfd = nil, -1
}
