// Package positions keeps how far each source has been delivered, in one
// JSON file in data_dir. Sources only Put a position after Loki acknowledged
// everything before it, so a restart resumes where delivery stopped: nothing
// lost, and nothing re-sent but what was in flight.
//
// Writes are atomic (temp file, fsync, rename, fsync dir): a crash leaves the
// old file or the new one, never half of one. One process at a time writes
// it: the holder of data_dir's lock (LockDir), which `podtail run` keeps for
// its whole life; Load reads it without taking part.
package positions

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// FileName is the positions file inside data_dir.
const FileName = "positions.json"

// Position is one source's delivered state: plain data.
type Position struct {
	Path   string `json:"path,omitempty"`
	Inode  uint64 `json:"inode,omitempty"`
	Offset int64  `json:"offset"`
	// Delivered, when above Offset, says everything up to it was delivered
	// although reading resumes at Offset (a line conmon split was still
	// being joined there): complete lines ending by Delivered are skipped.
	Delivered int64 `json:"delivered,omitempty"`
	// Cursor is, for a source read from the systemd journal, the journal
	// cursor of the entry reading resumes after (Offset is unused).
	Cursor string `json:"cursor,omitempty"`
	// DeliveredCursor, like Delivered: everything up to this entry was
	// delivered, although reading resumes after Cursor (a line split into
	// partial entries was still being joined there).
	DeliveredCursor string `json:"delivered_cursor,omitempty"`
	// DeliveredStreams and DeliveredCursors hold, for an output stream
	// (stdout, stderr) whose multi-line entry (a panic's trace) was not
	// delivered while later lines of the other stream were, what applies
	// to that stream's lines instead of Delivered (DeliveredCursor): its
	// lines from the entry's first one on are read and joined again.
	DeliveredStreams map[string]int64  `json:"delivered_streams,omitempty"`
	DeliveredCursors map[string]string `json:"delivered_cursors,omitempty"`
	// Fingerprint identifies a file by its first bytes ("<length>:<hash>"),
	// so a renamed, copied or gzipped file is recognised as the same file.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Last holds, per stream name, the time (unix ns) of the last delivered
	// entry, so timestamps made unique after a restart are the same as
	// before it (Loki then drops the in-flight resend as a duplicate).
	Last map[string]int64 `json:"last,omitempty"`
	// Updated is when the position last moved; used to forget positions of
	// containers long gone.
	Updated time.Time `json:"updated"`
}

// Store is the set of positions, kept in memory and synced to disk.
type Store struct {
	path string
	mu   sync.Mutex
	m    map[string]Position
	// dirty counts changes since the last sync.
	dirty uint64
	// enc caches each position as written to the file (`"key":{...}`);
	// stale holds the keys changed (or deleted) since they were encoded.
	// A sync re-encodes only those: with a thousand files, encoding every
	// position at each sync was 6.5 % of podtail's CPU (make bench).
	enc   map[string][]byte
	stale map[string]struct{}
	// keys are enc's keys in order, nil when a key came or went. A sync
	// writes the file from enc's values as they are (pieces: references to
	// them, taken under mu; a value is replaced, never changed), through
	// bw: the file laid out in a new array per sync (~50 a second at full
	// speed) was a seventh of what podtail allocated over 1,000 files, and
	// one kept was as large as enc again. wmu keeps one Sync at a time.
	keys   []string
	pieces [][]byte
	bw     *bufio.Writer
	wmu    sync.Mutex
	// changed (1-buffered) tells Run that there is something to sync.
	changed chan struct{}
	// resumed: the file was there when opened, so a podtail ran with this
	// data_dir before and may have sent more than it stored.
	resumed bool
}

type fileFormat struct {
	Version   int                 `json:"version"`
	Positions map[string]Position `json:"positions"`
}

// Open loads dir/positions.json, creating dir if needed. A missing file is
// an empty store, and is written at once (empty), so that a podtail killed
// before its first sync still leaves word that it ran (see Resumed). An
// unreadable file is an error naming it, because starting from nothing
// would re-send everything.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	s := &Store{path: filepath.Join(dir, FileName), m: map[string]Position{}, changed: make(chan struct{}, 1),
		enc: map[string][]byte{}, stale: map[string]struct{}{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		b, _ := json.Marshal(fileFormat{Version: 1, Positions: s.m})
		if err := WriteFile(s.path, b); err != nil {
			return nil, fmt.Errorf("positions: %w", err)
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("positions %s: %w", s.path, err)
	}
	if s.m, err = decode(s.path, b); err != nil {
		return nil, err
	}
	for k := range s.m {
		s.stale[k] = struct{}{}
	}
	s.resumed = true
	return s, nil
}

// decode parses the positions file read from path.
func decode(path string, b []byte) (map[string]Position, error) {
	var f fileFormat
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("positions %s is corrupt (move it away to start over, which re-sends logs): %w", path, err)
	}
	if f.Positions == nil {
		return map[string]Position{}, nil
	}
	return f.Positions, nil
}

// Load reads dir's positions file as it is, for people and tools (podtail
// positions list): it creates, locks and writes nothing, so it works beside
// a running podtail, whose writes replace the file whole (it sees the old
// one or the new one). A missing file is an error that wraps
// os.ErrNotExist.
func Load(dir string) (map[string]Position, error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("positions %s: %w", path, err)
	}
	return decode(path, b)
}

// Resumed reports whether the positions file was there when the store was
// opened: a podtail ran with this data_dir before, and whatever it read past
// the stored positions it may have sent (see pipeline.Entry.Replay).
func (s *Store) Resumed() bool { return s != nil && s.resumed }

// Path is the positions file.
func (s *Store) Path() string { return s.path }

// Get returns the position for key.
func (s *Store) Get(key string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[key]
	if ok && p.Last == nil {
		if _, stale := s.stale[key]; !stale {
			p.Last = s.lastOf(key)
		}
	}
	return p, ok
}

// lastOf decodes key's Last from its encoded form: once a position is
// encoded, only that holds it (see encode). s.mu must be held.
func (s *Store) lastOf(key string) map[string]int64 {
	e := s.enc[key]
	if e == nil {
		return nil
	}
	var p struct {
		Last map[string]int64 `json:"last"`
	}
	// e is `"key":{...}`: the value starts after the encoded key.
	kb, err := json.Marshal(key)
	if err != nil || len(e) <= len(kb) || json.Unmarshal(e[len(kb)+1:], &p) != nil {
		return nil // unreachable: encode wrote it from a Position
	}
	return p.Last
}

// Put records the position for key.
func (s *Store) Put(key string, p Position) {
	p.Updated = time.Now().UTC()
	s.mu.Lock()
	s.m[key] = p
	s.stale[key] = struct{}{}
	s.dirty++
	s.mu.Unlock()
	s.poke()
}

// poke tells Run to sync; one pending signal stands for any number.
func (s *Store) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Delete forgets key.
func (s *Store) Delete(key string) {
	s.mu.Lock()
	if _, ok := s.m[key]; ok {
		delete(s.m, key)
		s.stale[key] = struct{}{}
		s.dirty++
	}
	s.mu.Unlock()
	s.poke()
}

// Keys returns the keys that start with prefix.
func (s *Store) Keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// Forget deletes positions not updated for longer than age whose keys keep
// returns false for.
func (s *Store) Forget(age time.Duration, keep func(key string) bool) {
	cut := time.Now().Add(-age)
	defer s.poke()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, p := range s.m {
		if p.Updated.Before(cut) && !keep(k) {
			delete(s.m, k)
			s.stale[k] = struct{}{}
			s.dirty++
		}
	}
}

// Sync writes the positions to disk if they changed.
func (s *Store) Sync() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.dirty == 0 {
		s.mu.Unlock()
		return nil
	}
	gen := s.dirty
	pieces, err := s.encode()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("positions %s: %w", s.path, err)
	}
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(nil, 32<<10)
	}
	err = writeFile(s.path, func(f *os.File) error {
		s.bw.Reset(f)
		for _, p := range pieces {
			if _, err := s.bw.Write(p); err != nil {
				return err
			}
		}
		return s.bw.Flush()
	})
	s.bw.Reset(nil)
	clear(pieces)
	if err != nil {
		return fmt.Errorf("positions: %w", err)
	}
	s.mu.Lock()
	s.dirty -= gen
	s.mu.Unlock()
	return nil
}

// encode renders the file (fileFormat, with keys in order) as pieces to
// write one after the other, re-encoding only the positions changed since
// the last call. s.mu and s.wmu must be held.
func (s *Store) encode() ([][]byte, error) {
	for k := range s.stale {
		p, ok := s.m[k]
		if !ok {
			if _, had := s.enc[k]; had {
				delete(s.enc, k)
				s.keys = nil
			}
			continue
		}
		if _, had := s.enc[k]; !had {
			s.keys = nil
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		pb, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		// Exactly as long as needed: kept for every file, an append's
		// spare capacity was a third of the cache.
		e := make([]byte, 0, len(kb)+1+len(pb))
		s.enc[k] = append(append(append(e, kb...), ':'), pb...)
		// The per-stream times are read back only when a file is opened
		// (Get): kept as a map for each of a thousand files as well as
		// encoded, they were a third of a MB.
		if p.Last != nil {
			p.Last = nil
			s.m[k] = p
		}
	}
	clear(s.stale)
	if s.keys == nil {
		s.keys = slices.Sorted(maps.Keys(s.enc))
	}
	p := append(s.pieces[:0], fileHead)
	for i, k := range s.keys {
		if i > 0 {
			p = append(p, comma)
		}
		p = append(p, s.enc[k])
	}
	p = append(p, fileTail)
	s.pieces = p
	return p, nil
}

// syncGap is the least time between two syncs. Back to back, syncs took
// 10-11 % of podtail's CPU with 1,000 files (each re-encodes every
// position); 20 ms between them gave 6-10 % more lines per CPU-second in
// make bench, and lets a crash resend at most 20 ms more than was in flight,
// well inside what Loki recognises as a resend for any one stream below
// ~50,000 lines/s.
const syncGap = 20 * time.Millisecond

// Run syncs as soon as a position moves (at most once per syncGap), until
// ctx ends, then once more. Changes made meanwhile are coalesced into the
// next sync.
//
// Syncing at once rather than on a timer is what keeps a crash's resend down
// to what was in flight: Loki drops a resent entry as a duplicate only while
// it is among a stream's newest (about a thousand lines), so a position
// saved a quarter second late would have meant tens of thousands of
// duplicates at full speed. One sync costs a few milliseconds (two fsyncs),
// and happens at most once per push acknowledged.
//
// After a failed sync it retries no sooner than retry, so a full disk does
// not turn into a busy loop.
func (s *Store) Run(ctx context.Context, retry time.Duration, onErr func(error)) {
	for {
		select {
		case <-ctx.Done():
			if err := s.Sync(); err != nil {
				onErr(err)
			}
			return
		case <-s.changed:
			if err := s.Sync(); err != nil {
				onErr(err)
				s.poke()
				select {
				case <-ctx.Done():
				case <-time.After(retry):
				}
				continue
			}
			// Changes coming faster than this are written together.
			select {
			case <-ctx.Done():
			case <-time.After(syncGap):
			}
		}
	}
}

// WriteFile replaces path with b atomically and durably: a temp file in the
// same directory, fsync, rename, fsync of the directory. A crash or power
// loss leaves the old content or the new, never part of either.
func WriteFile(path string, b []byte) error {
	return writeFile(path, func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
}

var (
	fileHead = []byte(`{"version":1,"positions":{`)
	comma    = []byte(",")
	fileTail = []byte("}}")
)

// writeFile is WriteFile with the content written by write.
func writeFile(path string, write func(f *os.File) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: rename: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync dir: %w", path, err)
	}
	return nil
}
