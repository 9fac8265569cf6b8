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
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
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
	// recovery says what Open did with a damaged file; nil if it found none.
	recovery *Recovery

	// wrap is the seam a test fails writes through (ENOSPC): what a sync
	// writes goes through wrap(file); nil writes to the file.
	wrap func(io.Writer) io.Writer

	// opened is when the store was opened, with its monotonic reading, and
	// minSkew the lowest the wall clock has been seen behind the monotonic
	// one since (0 or less; see Forget). Both under mu.
	opened  time.Time
	minSkew time.Duration
	// wallStep is, in tests only, added to the wall clock's reading: a
	// date -s that the store alone sees.
	wallStep atomic.Int64
	// dirtySince is when the oldest change not on disk was made (zero when
	// the file holds every change), under mu: podtail_positions_unsaved_seconds.
	dirtySince time.Time
	metrics    metrics
}

// Open loads dir/positions.json, creating dir if needed. A missing file is
// an empty store, and is written at once (empty), so that a podtail killed
// before its first sync still leaves word that it ran (see Resumed).
//
// A damaged file (not JSON, cut short, empty, or JSON of another shape) is
// kept aside as positions.json.corrupt-<time> and replaced by an empty one,
// and the store says Resumed: the sources read again from their start, and
// the sink asks Loki what it holds of those lines before sending them, so
// nothing is lost and nothing is sent twice. Recovered says what was done,
// for the log. A file that cannot be read at all, or of a newer version, is
// an error naming it.
//
// A data_dir that is full (ENOSPC, EDQUOT) does not stop Open: the store
// works in memory and Run writes the file when space returns.
func Open(dir string) (*Store, error) { return open(dir, nil) }

// open is Open with the seam that writes go through (nil: none).
func open(dir string, wrap func(io.Writer) io.Writer) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	s := &Store{path: filepath.Join(dir, FileName), m: map[string]Position{}, metrics: newMetrics(), changed: make(chan struct{}, 1),
		enc: map[string][]byte{}, stale: map[string]struct{}{}, wrap: wrap, opened: time.Now()}
	s.removeTemps()
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		if err := s.writeEmpty(); err != nil {
			return nil, err
		}
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("positions %s: %w", s.path, err)
	}
	m, err := decode(s.path, b)
	var ce *CorruptError
	if errors.As(err, &ce) {
		if err := s.setAside(ce); err != nil {
			return nil, err
		}
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	s.m = m
	for k := range s.m {
		s.stale[k] = struct{}{}
	}
	s.resumed = true
	return s, nil
}

// writeEmpty writes the store (empty) as the positions file. Without room
// for it, the store carries on in memory, dirty, and Run writes it later.
func (s *Store) writeEmpty() error {
	s.dirty, s.dirtySince = 1, time.Now()
	if err := s.Sync(); err != nil && !NoSpace(err) {
		return err
	}
	s.poke()
	return nil
}

// decode parses the positions file read from path: a *CorruptError when
// it is not a positions file (not JSON, cut short, another shape).
func decode(path string, b []byte) (map[string]Position, error) {
	var f struct {
		Version   *int                `json:"version"`
		Positions map[string]Position `json:"positions"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		if len(b) == 0 {
			err = errors.New("empty file")
		}
		return nil, &CorruptError{Path: path, Err: err}
	}
	switch {
	case f.Version == nil:
		return nil, &CorruptError{Path: path, Err: errors.New(`no "version": not a positions file`)}
	case *f.Version > fileVersion:
		return nil, fmt.Errorf("positions %s is of version %d, written by a newer podtail than this one (version %d): "+
			"run that podtail, or move the file away to start over", path, *f.Version, fileVersion)
	case *f.Version != fileVersion:
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("version %d: not a positions file", *f.Version)}
	}
	for k, p := range f.Positions {
		if p.Offset < 0 || p.Delivered < 0 {
			return nil, &CorruptError{Path: path, Err: fmt.Errorf("position %q: negative offset", k)}
		}
	}
	if f.Positions == nil {
		return map[string]Position{}, nil
	}
	return f.Positions, nil
}

// fileVersion is the version of the positions file this podtail writes.
const fileVersion = 1

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
	now, wall := s.now()
	p.Updated = wall.UTC()
	s.mu.Lock()
	s.m[key] = p
	s.stale[key] = struct{}{}
	s.changedAt(now, wall)
	s.mu.Unlock()
	s.poke()
}

// now reads the clock: the time with its monotonic reading, and the wall
// clock's reading alone.
func (s *Store) now() (now, wall time.Time) {
	now = time.Now()
	return now, now.Round(0).Add(time.Duration(s.wallStep.Load()))
}

// changedAt counts a change made at now (wall: the wall clock then). s.mu
// must be held.
func (s *Store) changedAt(now, wall time.Time) {
	if s.dirty == 0 {
		s.dirtySince = now
	}
	s.dirty++
	s.minSkew = min(s.minSkew, s.skew(now, wall))
}

// skew is how far the wall clock moved since the store was opened beyond
// the monotonic clock: the sum of the steps it took meanwhile (date -s, an
// NTP step), negative for a clock set back.
func (s *Store) skew(now, wall time.Time) time.Duration {
	return wall.Sub(s.opened.Round(0)) - now.Sub(s.opened)
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
	now, wall := s.now()
	s.mu.Lock()
	if _, ok := s.m[key]; ok {
		delete(s.m, key)
		s.stale[key] = struct{}{}
		s.changedAt(now, wall)
	}
	s.mu.Unlock()
	s.poke()
}

// Len is how many positions the store holds.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
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
//
// Age is measured on the wall clock (Updated is what the file keeps across
// restarts), less any step the clock took while this store was open: a
// clock set back or forward (an hour, by hand or by NTP) makes positions
// forgotten later than age, never sooner. Positions updated before a
// forward step would otherwise look an hour older at once; those updated
// while the clock was behind would look older once it is set right.
func (s *Store) Forget(age time.Duration, keep func(key string) bool) {
	now, wall := s.now()
	defer s.poke()
	s.mu.Lock()
	defer s.mu.Unlock()
	sk := s.skew(now, wall)
	s.minSkew = min(s.minSkew, sk)
	// A position updated when the skew was u (≥ minSkew) is really
	// wall - Updated - sk + u old: at least wall - Updated - (sk - minSkew).
	// One read from the file counts as updated under skew 0.
	cut := wall.Add(-age - (sk - s.minSkew))
	for k, p := range s.m {
		if p.Updated.Before(cut) && !keep(k) {
			delete(s.m, k)
			s.stale[k] = struct{}{}
			s.changedAt(now, wall)
		}
	}
}

// Sync writes the positions to disk if they changed. When it fails (data_dir
// full), the positions stay in memory, still to be written, and the file
// keeps what the last successful sync wrote: a write replaces it whole or
// not at all.
func (s *Store) Sync() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.dirty == 0 {
		s.mu.Unlock()
		return nil
	}
	gen, at := s.dirty, time.Now()
	pieces, err := s.encode()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("positions %s: %w", s.path, err)
	}
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(nil, 32<<10)
	}
	err = writeFile(s.path, func(f *os.File) error {
		var w io.Writer = f
		if s.wrap != nil {
			w = s.wrap(f)
		}
		s.bw.Reset(w)
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
		s.metrics.writeErrors.Inc()
		return fmt.Errorf("positions not saved: %w", err)
	}
	s.mu.Lock()
	s.dirty -= gen
	if s.dirty == 0 {
		s.dirtySince = time.Time{}
	} else {
		s.dirtySince = at // changes made during the write are no older
	}
	s.mu.Unlock()
	s.metrics.writes.Inc()
	return nil
}

// unsaved is how long the oldest change not yet on disk has waited.
func (s *Store) unsaved() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirtySince.IsZero() {
		return 0
	}
	return time.Since(s.dirtySince)
}

// encode renders the file ({"version":1,"positions":{...}}, keys in
// order) as pieces to write one after the other, re-encoding only the
// positions changed since the last call. s.mu and s.wmu must be held.
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

// restGap is the gap after a sync that carried fewer than busyChanges
// changes: a host at rest (200 containers printing a line a minute)
// otherwise rewrote its whole positions file (535 KB with 1,200 sources,
// two fsyncs) three times a second, a sixth of podtail's CPU at rest. A
// crash then reads at most restGap more again, lines that the replay check
// finds in Loki and does not send twice; at full speed the gap is syncGap.
const (
	restGap     = 2 * time.Second
	busyChanges = 32
)

// Run syncs as soon as a position moves (at most once per syncGap, or
// restGap after a sync of few changes), until
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
// After a failed sync (data_dir full) it retries no sooner than retry, so a
// full disk does not turn into a busy loop; the positions go on moving in
// memory meanwhile. It logs the first failure, then at most every
// failureLogEvery while they go on, and the first sync that works again.
func (s *Store) Run(ctx context.Context, retry time.Duration, log *zap.Logger) {
	f := failures{retry: retry}
	for {
		select {
		case <-ctx.Done():
			f.note(time.Now(), s.Sync(), s.path, log)
			return
		case <-s.changed:
			s.mu.Lock()
			changes := s.dirty
			s.mu.Unlock()
			if err := s.Sync(); err != nil {
				f.note(time.Now(), err, s.path, log)
				s.poke()
				select {
				case <-ctx.Done():
				case <-time.After(retry):
				}
				continue
			}
			f.note(time.Now(), nil, s.path, log)
			// Changes coming faster than this are written together.
			if changes == 0 {
				continue // nothing was written: the next change is, at once
			}
			if changes < busyChanges {
				s.rest(ctx)
			} else {
				select {
				case <-ctx.Done():
				case <-time.After(syncGap):
				}
			}
		}
	}
}

// rest waits restGap, or less once busyChanges have come (output picked
// up again: a crash must not read seconds of it again), then has Run sync
// what came meanwhile.
func (s *Store) rest(ctx context.Context) {
	end := time.NewTimer(restGap)
	defer end.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			s.mu.Lock()
			dirty := s.dirty > 0
			s.mu.Unlock()
			if dirty {
				s.poke()
			}
			return
		case <-s.changed:
			s.mu.Lock()
			busy := s.dirty >= busyChanges
			s.mu.Unlock()
			if busy {
				s.poke()
				return
			}
		}
	}
}

// failureLogEvery is the least time between two logs of the same failure to
// write positions.
const failureLogEvery = time.Minute

// failures is Run's account of failed syncs, for its log.
type failures struct {
	retry         time.Duration
	n             int       // failed syncs in a row
	since, logged time.Time // the first of them; the last logged
}

// note logs what the outcome of a sync at now says: a first failure, one
// going on (once per failureLogEvery), the end of them.
func (f *failures) note(now time.Time, err error, path string, log *zap.Logger) {
	if err == nil {
		if f.n > 0 {
			log.Warn("positions saved again", zap.String("file", path), zap.Int("failed_writes", f.n),
				zap.Duration("unsaved_for", now.Sub(f.since).Round(time.Millisecond)))
			*f = failures{retry: f.retry}
		}
		return
	}
	f.n++
	if f.n == 1 {
		f.since, f.logged = now, now
		log.Error("positions cannot be written; reading and shipping go on, positions are kept in memory and "+
			"written as soon as they can be (a crash meanwhile reads again from the last positions written, "+
			"and what Loki holds of that is not sent again)",
			zap.String("file", path), zap.Duration("retry_every", f.retry), zap.Error(err))
		return
	}
	if now.Sub(f.logged) >= failureLogEvery {
		f.logged = now
		log.Error("positions still cannot be written", zap.String("file", path), zap.Int("failed_writes", f.n),
			zap.Duration("unsaved_for", now.Sub(f.since).Round(time.Second)), zap.Error(err))
	}
}

// NoSpace reports whether err is the file system being full: out of space,
// or over a quota.
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
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
