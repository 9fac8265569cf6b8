package file

import (
	"errors"
	"io"
	"io/fs"
	"math"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// Opening the files a listing found (design.md, step 3): each gets a
// reader positioned where its reading resumes, and a pipeline Stream whose
// acknowledgements store its position.

// openAll opens the files listed, older first, and reports whether it
// opened any.
func (d *Dir) openAll(fresh []candidate, now time.Time) (opened bool) {
	d.ls.unopened = false
	for _, c := range fresh {
		if d.open(c) {
			opened = true
			continue
		}
		_, seen := d.ls.seen[c.ino]
		_, refused := d.ls.refused[c.ino]
		if !seen && !refused && now.Sub(c.mtime) < heldBackRelist {
			d.ls.unopened = true // written to just now, and not yet a whole line (or no slot)
		}
	}
	return opened
}

// open starts reading a file not seen before, or decides it needs no
// reading. It returns true when it opened a reader.
func (d *Dir) open(c candidate) bool {
	labels, ok := d.cfg.Labels(c.name)
	if !ok {
		d.markSeen(c.ino, nil, c.name)
		return false
	}
	if !d.cfg.OpenFiles.tryAcquire() {
		d.unsettled = true // another directory's close wakes no one here
		if !d.warned["open"] {
			d.warned["open"] = true
			d.log.Warn("open-file bound reached; waiting for a slot", zap.String("file", c.name))
		}
		return false
	}
	r, err := d.openReader(c)
	if err != nil || r == nil {
		d.cfg.OpenFiles.release()
		var re *refusedError
		switch {
		case errors.As(err, &re):
			// Swapped since the listing (a FIFO, a link): refused on the
			// descriptor. Without a stat (a symlink), the next listing sees it.
			if re.st.ino != 0 {
				d.refuse(c.name, re.st.ino, re.reason, re.st.mode)
			}
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			d.log.Warn("cannot read file", zap.String("file", c.name), zap.Error(err))
			d.markSeen(c.ino, nil, c.name)
		}
		return false
	}
	d.seq++
	r.seq = d.seq
	stages, ml := d.stages(c.name)
	r.stream = pipeline.NewStream(pipeline.StreamConfig{
		Tenant:   d.cfg.Tenant,
		Labels:   labels,
		Collide:  time.Microsecond,
		Drops:    d.metrics.dropped,
		Repaired: d.metrics.repaired,
		OnAck:    d.acked(r),
		Metadata: d.cfg.Metadata,
		// Lines go to the sink a read at a time (lines flushes) as views of
		// the read buffer, which the sink copies from. (Multiline joining
		// makes lines of its own, and keeps a queue of entries the stream
		// refused: see r.joined.)
		BorrowedLines: ml == nil,
	}, stages, d.out)
	if p, ok := d.store.Get(r.key); ok {
		r.stream.Restore(p.Last)
	}
	r.stream.ReplayTo(r.replayTo)
	r.ml, r.borrow = ml, ml == nil
	r.now = d.clock.Now
	r.bytesN = d.metrics.bytes.WithLabelValues(d.cfg.Tenant)
	r.linesN = d.metrics.lines.WithLabelValues(d.cfg.Tenant)
	r.truncN = d.metrics.truncated.WithLabelValues(d.cfg.Tenant)
	r.labels = labels
	r.readTo.Store(r.off)
	d.readers[c.ino] = r
	d.shown.add(r)
	d.metrics.opened.WithLabelValues(d.cfg.Tenant, r.kind).Inc()
	d.metrics.open.Inc()
	d.log.Debug("reading file", zap.String("file", c.name), zap.String("kind", r.kind), zap.Int64("offset", r.off))
	return true
}

// openReader opens c (only a regular file with one link: see openAt) and
// positions it: where the stored position (or this process's own reading)
// left the file with the same fingerprint, or at the start of a file never
// seen. It returns nil, nil when the file cannot be identified yet (no
// whole line) or needs no reading.
func (d *Dir) openReader(c candidate) (*reader, error) {
	path := filepath.Join(d.cfg.Dir, c.name)
	f, st, err := openAt(d.ls.dirfd, c.name, path)
	if err != nil {
		return nil, err
	}
	if st.ino != c.ino {
		f.Close()
		return nil, nil // replaced between the listing and the open: next cycle
	}
	head, src, ok := readHead(f, c.gz)
	if !ok {
		f.Close()
		return nil, nil // next cycle
	}
	it := d.id.identify(head, d.prefix, d.store)
	for _, o := range d.readers {
		if o.key == it.key {
			f.Close()
			return nil, nil // another name of a file being read (lumberjack's backup, its .gz): that reader finishes it
		}
	}
	d.id.remember(c.ino, it)
	r := &reader{name: c.name, path: path, ino: c.ino, f: f, src: src, gz: c.gz, kind: "plain", key: it.key, fp: it.fp}
	if c.gz {
		r.kind = "gzip"
	}
	start := it.start
	if it.found && !c.gz && start > st.size {
		d.log.Info("file shorter than its stored position; reading it from the start", zap.String("file", c.name))
		start = 0
	}
	if start > 0 {
		if c.gz {
			n, err := io.CopyN(io.Discard, r.src, start)
			if err != nil || n < start {
				// Nothing past what was read: a backup of a finished file.
				d.markSeen(c.ino, f, "")
				f.Close()
				d.metrics.skipped.WithLabelValues(d.cfg.Tenant).Inc()
				return nil, nil
			}
		} else if _, err := f.Seek(start, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		r.kind += "-resumed"
	}
	r.off = start
	if d.store.Resumed() {
		// What the file held when opened, an earlier podtail may have read
		// and sent without its acknowledgement reaching the positions file
		// (a gzip backup: all of it, offsets being decompressed ones).
		r.replayTo = st.size
		if c.gz {
			r.replayTo = math.MaxInt64
		}
	}
	return r, nil
}

// acked returns the OnAck callback of reader r: it stores the position.
// (Called from the sink's goroutine: it touches only the store.)
func (d *Dir) acked(r *reader) func(int64, map[string]int64) {
	key, ino, fp := r.key, r.ino, r.fp.String()
	store, path := d.store, r.path
	return func(pos int64, last map[string]int64) {
		store.Put(key, positions.Position{Path: path, Inode: ino, Offset: pos, Fingerprint: fp, Last: last})
	}
}
