package file

import (
	"bytes"
	"context"
	"io/fs"

	"go.uber.org/zap"
)

// A file at its end (design.md, step 5): a backup read through, a file
// renamed away or deleted (the writer has moved on), truncated in place, or
// still the live file, which is read again next cycle.

// atEOF decides whether a file at its end is finished: a backup read
// through, a file renamed away (lumberjack: the writer has moved on) or
// deleted, or truncated in place (copytruncate). ctx is readAll's sink wait.
func (d *Dir) atEOF(ctx context.Context, r *reader) {
	if r.gz {
		if !d.finish(ctx, r, "gzip backup read") {
			d.unsettled = true // pushed back: the next cycle finishes it
		}
		return
	}
	st, err := fstat(r.f)
	if err == nil && st.size < r.off {
		d.log.Info("file truncated in place (copytruncate); reading it anew", zap.String("file", r.name))
		d.metrics.rotations.WithLabelValues(d.cfg.Tenant, "truncate").Inc()
		d.close(r)
		d.unsettled = true
		return // not seen: the next cycle opens it as a new file
	}
	if d.ls.dirfd < 0 {
		// The directory could not be opened this cycle: only a file with no
		// name left is known to be finished.
		if err != nil || st.nlink > 0 {
			return
		}
		err = fs.ErrNotExist
	} else {
		var cur fileStat
		cur, err = lstatAt(d.ls.dirfd, r.name)
		if err == nil && cur.ino == r.ino {
			return // still the live file
		}
	}
	// Renamed or deleted: nothing more will be written to it. Read once more,
	// since a write may have landed between the last read and the rename.
	_, eof, rerr := r.read(ctx, d.clock.Now().Add(readSlice))
	if rerr != nil || !eof {
		d.unsettled = true
		return // pushed back, or more to read: the next cycle comes back here
	}
	d.id.readTo[r.key] = r.off
	reason := "renamed"
	if err != nil {
		reason = "deleted"
	}
	if d.finish(ctx, r, "file "+reason) {
		d.metrics.rotations.WithLabelValues(d.cfg.Tenant, reason).Inc()
	} else {
		d.unsettled = true // pushed back: the next cycle finishes it
	}
}

// finish ships a last line without a newline, closes r, and remembers its
// inode as done. It returns false, leaving r open, while r still holds
// complete lines the sink has not taken.
func (d *Dir) finish(ctx context.Context, r *reader, why string) bool {
	if bytes.IndexByte(r.buf, '\n') >= 0 || r.stream.Flush(ctx) != nil {
		return false // the next cycle sends them, then finishes
	}
	if len(r.buf) == 0 && !r.gz && !r.skipping {
		// A plain reader gives its unshipped tail back at the end of each
		// read (release seeks back to it), so a last line without a newline
		// is read again here. (It was lost from b951766 on.)
		max, _ := r.stream.LineLimit()
		if r.readTail(max) {
			return false // whole lines arrived meanwhile: the next cycle sends them
		}
	}
	if len(r.buf) > 0 && !r.skipping {
		if err := r.send(ctx, d.clock.Now(), string(r.buf), r.off+int64(len(r.buf))); err != nil {
			return false // not taken: the next cycle tries again
		}
		r.off += int64(len(r.buf))
		r.readTo.Store(r.off)
		r.buf = r.buf[:0]
		d.id.readTo[r.key] = r.off
	}
	if r.stream.Flush(ctx) != nil {
		return false // taken, not handed over: the next cycle's read does
	}
	if err := r.flush(ctx, true); err != nil {
		// The last joined entry, completed now, was not taken: it is kept
		// in r.joined, and the next cycle sends it, then finishes. (Closing
		// here lost it.)
		return false
	}
	d.log.Debug("file finished", zap.String("file", r.name), zap.String("why", why), zap.Int64("offset", r.off))
	d.markSeen(r.ino, r.f, "")
	d.close(r)
	return true
}

func (d *Dir) close(r *reader) {
	r.release()
	r.f.Close()
	delete(d.readers, r.ino)
	d.shown.drop(r.ino)
	d.cfg.OpenFiles.release()
	d.metrics.open.Dec()
}

func (d *Dir) closeAll() {
	for _, r := range d.readers {
		d.close(r)
	}
	d.closeDir()
}
