package file

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/podtail/podtail/pkg/source/positions"
)

// Identification (design.md, step 3): a file is its head. Its fingerprint
// is the hash of its first ≤ 1 KiB, taken once it holds a whole line; a file
// whose head matches one read by this process or stored in positions is the
// same file (renamed, copied or gzipped), and reading resumes where the
// acknowledged (or this process's own) reading left it.

const (
	forgetAfter = time.Hour
	forgetEvery = time.Minute
)

// identifying is what a Dir knows of the files it has read.
type identifying struct {
	known  map[string]Fingerprint // key -> fingerprint of files read by this process
	readTo map[string]int64       // key -> furthest offset read by this process
	keyOf  map[uint64]string      // inode -> key of every present file identified
	forgot time.Time              // last forget
}

func newIdentifying() identifying {
	return identifying{known: map[string]Fingerprint{}, readTo: map[string]int64{}, keyOf: map[uint64]string{}}
}

// identity is what a file's head says it is.
type identity struct {
	key   string
	fp    Fingerprint
	start int64 // where reading resumes
	found bool  // read before (by this process, or stored)
}

// readHead reads the head a file is identified by, and returns the reader
// its lines are read from after it (the file itself, or for gzip the
// decompressed stream past the head). ok is false when the file cannot be
// identified yet: not one whole line (a file just created), or a gzip
// backup still being written.
func readHead(f *os.File, gz bool) (head []byte, src io.Reader, ok bool) {
	head = make([]byte, FingerprintSize)
	if gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, nil, false // still being written by the rotator
		}
		// The head must be whole to compare with the fingerprint taken from
		// the plain file: a backup still being compressed yields fewer bytes
		// and would look like a new file. Short is fine only at the real end.
		n := 0
		for n < len(head) {
			m, err := zr.Read(head[n:])
			n += m
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, nil, false // still being written (or corrupt)
			}
		}
		head = head[:n]
		src = io.MultiReader(bytes.NewReader(head), zr)
	} else {
		n, _ := f.ReadAt(head, 0)
		head = head[:n]
		src = f
	}
	if len(head) < FingerprintSize && bytes.IndexByte(head, '\n') < 0 {
		return nil, nil, false // not one whole line yet: cannot be told apart
	}
	return head, src, true
}

// identify finds the file that starts with head: among files this process
// read, then among stored positions under prefix. Reading resumes at the
// larger of the acknowledged offset and what this process read.
func (id *identifying) identify(head []byte, prefix string, store *positions.Store) identity {
	var it identity
	for k, f := range id.known {
		if f.Matches(head) {
			it = identity{key: k, fp: f, found: true}
			break
		}
	}
	if !it.found {
		for _, k := range store.Keys(prefix) {
			p, _ := store.Get(k)
			f, err := ParseFingerprint(p.Fingerprint)
			if err == nil && f.Matches(head) {
				it = identity{key: k, fp: f, found: true}
				break
			}
		}
	}
	if !it.found {
		fp := NewFingerprint(head)
		return identity{key: prefix + fp.String(), fp: fp}
	}
	if p, ok := store.Get(it.key); ok {
		it.start = p.Offset
	}
	it.start = max(it.start, id.readTo[it.key])
	return it
}

// remember records that inode ino is the file it.
func (id *identifying) remember(ino uint64, it identity) {
	id.keyOf[ino] = it.key
	id.known[it.key] = it.fp
}

// forget, at most every forgetEvery, drops stored positions of this
// directory's files that are gone (no file left with their fingerprint, a
// .gz backup included) and have not moved for an hour, and the in-memory
// records of files gone.
func (d *Dir) forget(now time.Time) {
	if now.Sub(d.id.forgot) <= forgetEvery {
		return
	}
	d.id.forgot = now
	live := map[string]bool{}
	for _, k := range d.id.keyOf {
		live[k] = true
	}
	d.store.Forget(forgetAfter, func(key string) bool {
		return !strings.HasPrefix(key, d.prefix) || live[key]
	})
	for k := range d.id.known {
		if !live[k] {
			delete(d.id.known, k)
			delete(d.id.readTo, k)
		}
	}
}
