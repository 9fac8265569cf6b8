package source

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/source/positions"
)

// chain is a line split by conmon: where its first part starts, and where
// its last part ends (-1 while unfinished).
type chain struct{ start, end int64 }

// acked stores the position up to which everything was delivered (tok is
// a position token, see token). Reading must resume at the start of a line
// conmon split, or of a multi-line entry, not yet delivered in full, so the
// offset stays there and Delivered records the rest; a stream with such an
// entry gets its own Delivered at the entry's first line (its later lines
// are in the entry, or after it), so they are read and joined again.
func (c *ContainerOutput) acked(tok int64, last map[string]int64) {
	pos := tok >> posShift
	c.mu.Lock()
	resume := pos
	kept := c.chains[:0]
	for _, ch := range c.chains {
		if ch.end >= 0 && ch.end <= pos {
			continue // delivered whole
		}
		kept = append(kept, ch)
		if ch.start < pos {
			resume = min(resume, ch.start)
		}
	}
	c.chains = kept
	var by map[string]int64
	c.joins.settle(tok, func(stream string, start int64) {
		if start < pos {
			if by == nil {
				by = map[string]int64{}
			}
			by[stream] = start
			resume = min(resume, start)
		}
	})
	// Still under c.mu: SpoolCopy moves the position to another inode, and
	// a Put of the old one must not come after it.
	defer c.mu.Unlock()
	p := positions.Position{Path: c.target.LogPath, Inode: c.inode.Load(), Offset: resume, Last: last}
	if resume < pos {
		p.Delivered, p.DeliveredStreams = pos, by
	}
	c.store.Put(c.key, p)
}

// SpoolCopy copies the part of the log not yet acknowledged to dst, at the
// same offsets (the part before is a hole in a sparse file), and moves the
// stored position to the copy, so that a restart reads on from dst. It is
// for a container that is gone, whose log Podman deleted while this reader
// still holds it open; the reader itself carries on from its descriptor.
func (c *ContainerOutput) SpoolCopy(dst string) error {
	f := c.file.Load()
	if f == nil {
		return errors.New("spool: the log is not open")
	}
	// A descriptor of our own on the (deleted) log, since Run may close f at
	// any moment. Control holds a reference on f's descriptor while it runs,
	// so Close can neither free nor recycle the number under us (f.Fd()
	// could: the race detector caught it); a closed f is an error.
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("spool: %s: %w", c.target.LogPath, err)
	}
	var src *os.File
	if cerr := rc.Control(func(fd uintptr) { src, err = os.Open(fmt.Sprintf("/proc/self/fd/%d", fd)) }); cerr != nil {
		return fmt.Errorf("spool: %s is no longer open: %w", c.target.LogPath, cerr)
	}
	if err != nil {
		return fmt.Errorf("spool: reopen %s: %w", c.target.LogPath, err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil || inodeOf(st) != c.inode.Load() {
		return fmt.Errorf("spool: %s is no longer open", c.target.LogPath)
	}
	var from int64
	if p, ok := c.store.Get(c.key); ok && p.Inode == inodeOf(st) {
		from = p.Offset
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer os.Remove(tmp)
	_, err = out.Seek(from, io.SeekStart)
	if err == nil {
		_, err = io.Copy(out, io.NewSectionReader(src, from, st.Size()-from))
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return fmt.Errorf("spool: copy %s to %s: %w", c.target.LogPath, dst, err)
	}
	cst, err := os.Stat(dst)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inode.Store(inodeOf(cst))
	p, _ := c.store.Get(c.key)
	p.Path, p.Inode = dst, inodeOf(cst)
	c.store.Put(c.key, p)
	c.log.Info("container removed before its output was delivered; kept in the spool",
		zap.String("spool", dst), zap.Int64("from", from), zap.Int64("bytes", st.Size()-from))
	return nil
}

// resumeAt seeks to where reading resumes and returns that offset.
func (c *ContainerOutput) resumeAt(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", c.target.LogPath, err)
	}
	inode := inodeOf(st)
	c.inode.Store(inode)

	var off int64
	if p, ok := c.store.Get(c.key); ok {
		switch {
		case p.Inode != 0 && p.Inode != inode:
			c.log.Info("container log replaced since the stored position; reading it from the start")
		case p.Offset > st.Size():
			c.log.Info("container log truncated since the stored position; reading it from the start",
				zap.Int64("stored", p.Offset), zap.Int64("size", st.Size()))
		default:
			off = p.Offset
			c.skipTo, c.skipBy = p.Delivered, p.DeliveredStreams
			c.stream.Restore(p.Last)
		}
	} else if c.fromEnd {
		off = st.Size()
		c.store.Put(c.key, positions.Position{Path: c.target.LogPath, Inode: inode, Offset: off})
	}
	if c.store.Resumed() {
		// An earlier podtail may have read and sent what the log held, past
		// the acknowledged offset, without the acknowledgement reaching the
		// positions file: the sink checks such lines with Loki.
		c.stream.ReplayTo(st.Size()<<posShift | (1<<posShift - 1))
	}
	c.readTo.Store(off)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seek %s to %d: %w", c.target.LogPath, off, err)
	}
	c.log.Debug("reading container output", zap.String("path", c.target.LogPath), zap.Int64("offset", off))
	return off, nil
}

func inodeOf(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}
