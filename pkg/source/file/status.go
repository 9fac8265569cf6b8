package file

import (
	"maps"
	"sort"
	"sync"
	"time"
)

// The status page's view of a directory (Dir.Files): its open files, each
// with its labels and how far it was read and acknowledged. Registered when
// a file is opened and dropped when it is closed, under a lock of its own;
// the reading loop itself only publishes its offset (reader.readTo) once per
// chunk.

// FileStatus is one open file of a directory.
type FileStatus struct {
	Name   string
	Path   string
	Key    string // positions key
	Kind   string // plain, gzip, plain-resumed, gzip-resumed
	Labels map[string]string
	// Read is the offset read up to (in the decompressed stream for a
	// gzip backup); Acked the offset Loki acknowledged everything up to.
	Read, Acked int64
	// Size is the file's size now, -1 for a gzip backup (its decompressed
	// size is not known before it is read); ModTime its last write.
	Size    int64
	ModTime time.Time
	// Oldest is the time of the oldest entry sent and not acknowledged
	// yet; zero when none is.
	Oldest time.Time
}

type shown struct {
	mu sync.Mutex
	rs map[uint64]*reader
}

func (s *shown) add(r *reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rs == nil {
		s.rs = map[uint64]*reader{}
	}
	s.rs[r.ino] = r
}

func (s *shown) drop(ino uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rs, ino)
}

// Files returns the directory's open files, oldest opened first. Safe from
// any goroutine.
func (d *Dir) Files() []FileStatus {
	d.shown.mu.Lock()
	rs := make([]*reader, 0, len(d.shown.rs))
	for _, r := range d.shown.rs {
		rs = append(rs, r)
	}
	d.shown.mu.Unlock()
	sort.Slice(rs, func(i, j int) bool { return rs[i].seq < rs[j].seq })
	out := make([]FileStatus, 0, len(rs))
	for _, r := range rs {
		// Fields set before the reader was shown and never changed since,
		// but for readTo (atomic) and the stream's own state (locked).
		fs := FileStatus{Name: r.name, Path: r.path, Key: r.key, Kind: r.kind, Labels: maps.Clone(r.labels),
			Read: r.readTo.Load(), Size: -1}
		if p, ok := d.store.Get(r.key); ok {
			fs.Acked = p.Offset
		}
		// The descriptor, not the path: a renamed file is still read
		// through it. A reader closed meanwhile answers an error.
		if st, err := r.f.Stat(); err == nil {
			fs.ModTime = st.ModTime()
			if !r.gz {
				fs.Size = st.Size()
			}
		}
		if t, ok := r.stream.Oldest(); ok {
			fs.Oldest = t
		}
		out = append(out, fs)
	}
	return out
}

// Draining reports whether the tailer was told its container stopped (it
// reads what is left, then ends).
func (d *Dir) Draining() bool { return d.w.has(draining) }
