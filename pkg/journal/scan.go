package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// scan lists the roots and their subdirectories and opens the journal
// files not open yet. A file already open is recognised by device and inode
// even under a new name (rotation renames system.journal to
// system@….journal), and a file opened before by its file_id. Open files the
// scan does not find any more are marked gone: they are read to their end
// through the mapping and then closed. During Open (initial) a root that
// cannot be read is an error; later it is reported once through Next.
func (r *Reader) scan(initial bool) error {
	clear(r.seen)
	r.scanBlind = false
	for _, dir := range r.dirs {
		if err := r.scanDir(dir, true, initial); err != nil {
			return err
		}
	}
	// A directory that could not be listed says nothing of its files: they
	// are neither gone nor forgotten on account of this scan.
	if !r.scanBlind {
		for _, s := range r.sources {
			s.gone = !r.seen[s.f.key]
		}
		for p, k := range r.donePaths {
			if !r.seen[k] {
				delete(r.donePaths, p) // deleted: forget it
			}
		}
	}
	r.accountGaps()
	return nil
}

func (r *Reader) scanDir(dir string, root, initial bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		err = fmt.Errorf("journal: reading directory %s: %w", dir, err)
		if initial && root {
			return err
		}
		r.scanBlind = true
		if !r.dirErrors[dir] {
			r.dirErrors[dir] = true
			r.pending = append(r.pending, err)
		}
		return nil
	}
	delete(r.dirErrors, dir)
	for _, ent := range ents {
		name := ent.Name()
		path := filepath.Join(dir, name)
		if ent.IsDir() {
			if root {
				r.scanDir(path, false, initial) //nolint:errcheck // only roots fail
			}
			continue
		}
		if strings.HasSuffix(name, ".journal") || strings.HasSuffix(name, ".journal~") {
			r.consider(path)
		}
	}
	return nil
}

// consider opens the journal file at path unless it is known.
func (r *Reader) consider(path string) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return // gone since the listing, or not a file
	}
	key := keyOf(fi)
	r.seen[key] = true
	if s := r.byKey[key]; s != nil {
		s.f.path = path // renamed, by rotation
		return
	}
	if k, ok := r.donePaths[path]; ok && k == key {
		return
	}
	f, err := openFile(path, &r.retired, r.maps)
	if errors.Is(err, errNotReady) {
		return // journald is creating it: next scan
	}
	if err != nil {
		r.donePaths[path] = key
		if !errors.Is(err, fs.ErrNotExist) {
			r.pending = append(r.pending, asFileError(&file{path: path}, err))
		}
		return
	}
	if _, dup := r.fileIDs[f.hdr.fileID]; dup {
		// A file read before, under another inode (a copy): not again.
		r.donePaths[path] = key
		f.close()
		return
	}
	r.fileIDs[f.hdr.fileID] = struct{}{}
	r.addSource(f)
}

func (r *Reader) addSource(f *file) {
	s := &source{f: f, order: r.nextOrder, heapIdx: -1, group: r.groupOf(f.hdr.seqnumID)}
	r.nextOrder++
	if r.match != nil {
		s.matchHash = f.hash(r.match)
	}
	if r.after.IsZero() {
		s.positioned = true
	}
	r.sources = append(r.sources, s)
	r.byKey[f.key] = s
}
