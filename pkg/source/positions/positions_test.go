package positions_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podtail/podtail/pkg/source/positions"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, dir string) *positions.Store {
	t.Helper()
	s, err := positions.Open(dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func mustSync(t *testing.T, s *positions.Store) {
	t.Helper()
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// writeFile writes a positions file by hand, for states (old Updated times)
// the Store's API cannot produce.
func writeFile(t *testing.T, dir string, ps map[string]positions.Position) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"version": 1, "positions": ps})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, positions.FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Put, Get and Delete survive a Sync and a fresh Open of the same directory:
// every field of a Position comes back, deleted keys stay deleted, and Open
// creates a missing data_dir.
func TestRoundTripThroughOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	s := open(t, dir)
	if _, ok := s.Get("container:a"); ok {
		t.Fatal("fresh store has a position")
	}
	want := positions.Position{Path: "/var/log/a.log", Inode: 42, Offset: 1234,
		Last: map[string]int64{"stdout": 1_700_000_000_123_456_789, "stderr": 7}}
	s.Put("container:a", want)
	s.Put("container:b", positions.Position{Offset: 9})
	s.Put("container:c", positions.Position{Offset: 1})
	s.Put("container:c", positions.Position{Offset: 2}) // overwrite
	s.Delete("container:b")
	s.Delete("container:never") // no-op
	if s.Path() != filepath.Join(dir, positions.FileName) {
		t.Errorf("Path() = %q", s.Path())
	}
	before, _ := s.Get("container:a")
	if before.Updated.IsZero() || time.Since(before.Updated) > time.Minute {
		t.Errorf("Put set Updated = %v, want about now", before.Updated)
	}
	odd := `file:/x/"y"#a:b` // quotes and colons in the key
	s.Put(odd, positions.Position{Offset: 5, Last: map[string]int64{"s": 3}})
	mustSync(t, s)
	// Once encoded, Last lives only in the encoded form: Get reads it back.
	if after, _ := s.Get("container:a"); len(after.Last) != 2 || after.Last["stdout"] != want.Last["stdout"] {
		t.Errorf("after Sync, Get's Last = %v, want %v", after.Last, want.Last)
	}
	if p, _ := s.Get(odd); p.Last["s"] != 3 || p.Offset != 5 {
		t.Errorf("after Sync, %s = %+v, want offset 5 and last s=3", odd, p)
	}

	r := open(t, dir)
	got, ok := r.Get("container:a")
	if !ok {
		t.Fatal("container:a lost across Open")
	}
	if got.Path != want.Path || got.Inode != want.Inode || got.Offset != want.Offset ||
		len(got.Last) != 2 || got.Last["stdout"] != want.Last["stdout"] || got.Last["stderr"] != want.Last["stderr"] ||
		!got.Updated.Equal(before.Updated) {
		t.Errorf("after reopen got %+v, want %+v (Updated %v)", got, want, before.Updated)
	}
	if _, ok := r.Get("container:b"); ok {
		t.Error("deleted container:b came back")
	}
	if c, _ := r.Get("container:c"); c.Offset != 2 {
		t.Errorf("container:c offset = %d, want the last Put, 2", c.Offset)
	}
}

// The positions file is written with mode 0600 and no temporary file is left
// next to it, however many times it is rewritten.
func TestSyncWritesPrivateFileWithoutLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for i := range 5 {
		s.Put("k", positions.Position{Offset: int64(i)})
		mustSync(t, s)
	}
	st, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode = %v, want 0600", mode)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != positions.FileName {
		t.Errorf("data_dir holds %v, want only %s", names, positions.FileName)
	}
}

// An empty but valid file (no positions) opens as an empty store that can be
// written to.
func TestOpenFileWithoutPositions(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, positions.FileName), []byte(`{"version":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	s.Put("k", positions.Position{Offset: 3})
	if p, ok := s.Get("k"); !ok || p.Offset != 3 {
		t.Errorf("Get after Put = %+v, %v", p, ok)
	}
}

func fileStamp(t *testing.T, path string) (time.Time, uint64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.ModTime(), st.Sys().(*syscall.Stat_t).Ino
}

// Sync writes nothing when nothing changed since the last Sync (nor when the
// only calls were a Delete or Forget that removed nothing): the file keeps
// its mtime and inode. A Put then does rewrite it.
func TestSyncWithoutChangeDoesNotRewrite(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.Put("container:a", positions.Position{Offset: 1})
	mustSync(t, s)
	// Move the mtime into the past so a rewrite is visible whatever the
	// file system's timestamp granularity.
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(s.Path(), old, old); err != nil {
		t.Fatal(err)
	}
	_, ino := fileStamp(t, s.Path())

	s.Delete("container:missing")
	s.Forget(time.Hour, func(string) bool { return false }) // nothing is stale
	mustSync(t, s)
	mustSync(t, s)
	if m, i := fileStamp(t, s.Path()); !m.Equal(old) || i != ino {
		t.Errorf("file rewritten without a change: mtime %v inode %d, was %v inode %d", m, i, old, ino)
	}

	s.Put("container:a", positions.Position{Offset: 2})
	mustSync(t, s)
	if m, i := fileStamp(t, s.Path()); m.Equal(old) && i == ino {
		t.Error("file not rewritten after a Put")
	}
}

// Opening a data_dir without a positions file writes an empty one at once,
// so that the next podtail knows one ran before it (Resumed), even if this
// one was killed before its first sync; the first store is not resumed.
func TestOpenLeavesWordThatItRan(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if s.Resumed() {
		t.Error("a store opened on an empty data_dir says Resumed")
	}
	if _, err := os.Stat(s.Path()); err != nil {
		t.Fatalf("no positions file after Open: %v", err)
	}
	again := open(t, dir)
	if !again.Resumed() {
		t.Error("a store opened where one ran before does not say Resumed")
	}
	if _, ok := again.Get("container:a"); ok {
		t.Error("the empty file holds a position")
	}
}

// Forget deletes exactly the positions that are older than age and that keep
// refuses; fresh positions and kept ones stay, and the deletion is synced.
func TestForgetRemovesOnlyStaleUnkeptKeys(t *testing.T) {
	dir := t.TempDir()
	stale := time.Now().Add(-2 * time.Hour).UTC()
	writeFile(t, dir, map[string]positions.Position{
		"stale-kept": {Offset: 1, Updated: stale},
		"stale-gone": {Offset: 2, Updated: stale},
	})
	s := open(t, dir)
	s.Put("fresh-unkept", positions.Position{Offset: 3})
	s.Forget(time.Hour, func(k string) bool { return k == "stale-kept" })
	for key, want := range map[string]bool{"stale-kept": true, "stale-gone": false, "fresh-unkept": true} {
		if _, ok := s.Get(key); ok != want {
			t.Errorf("after Forget, %s present = %v, want %v", key, ok, want)
		}
	}
	mustSync(t, s)
	r := open(t, dir)
	if _, ok := r.Get("stale-gone"); ok {
		t.Error("forgotten key is back after Sync and Open")
	}
	if _, ok := r.Get("stale-kept"); !ok {
		t.Error("kept key lost after Sync and Open")
	}
}

// Run syncs once more when its context ends, so the last acknowledged
// positions reach the disk on shutdown even with a long interval.
func TestRunSyncsOnStop(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	s.Put("container:a", positions.Position{Offset: 77})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, time.Hour, noErrors(t))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if p, ok := open(t, dir).Get("container:a"); !ok || p.Offset != 77 {
		t.Errorf("after Run stopped, file holds %+v, %v; want offset 77", p, ok)
	}
}

// Run writes a moved position to disk at once, not on a timer: a crash
// right after an acknowledgement must not resend what Loki already has.
// After a write of few changes (a host at rest) the next waits up to
// RestGap, unless BusyChanges come first (output picked up again).
func TestRunSyncsPromptlyAfterPut(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx, time.Hour, noErrors(t))
	}()
	defer func() { cancel(); <-done }()
	onDisk := func(key string, off int64, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			if p, ok := open(t, dir).Get(key); ok && p.Offset == off {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("%s offset %d not on disk %v after Put", key, off, within)
			}
			time.Sleep(time.Millisecond)
		}
	}
	s.Put("container:a", positions.Position{Offset: 1})
	onDisk("container:a", 1, positions.RestGap/2)
	s.Put("container:a", positions.Position{Offset: 2})
	onDisk("container:a", 2, positions.RestGap+time.Second)
	// At rest again; a burst of changes is written before RestGap is out.
	for i := range positions.BusyChanges {
		s.Put(fmt.Sprintf("file:/logs#%d", i), positions.Position{Offset: int64(i + 1)})
	}
	onDisk(fmt.Sprintf("file:/logs#%d", positions.BusyChanges-1), positions.BusyChanges, positions.RestGap/2)
}

// Keys lists exactly the keys with the given prefix, deleted ones excluded.
func TestKeys(t *testing.T) {
	s := open(t, t.TempDir())
	for _, k := range []string{"container:a", "container:b", "file:/x", "containerx"} {
		s.Put(k, positions.Position{})
	}
	s.Delete("container:b")
	got := s.Keys("container:")
	slices.Sort(got)
	if want := []string{"container:a"}; !slices.Equal(got, want) {
		t.Errorf("Keys(container:) = %q, want %q", got, want)
	}
	if got := s.Keys(""); len(got) != 3 {
		t.Errorf("Keys(\"\") = %q, want all 3", got)
	}
}

// A sync re-encodes only the positions that changed: after any mix of
// puts, deletes and forgetting, with syncs in between, the file holds
// exactly the store's positions, and a store opened on it (which
// re-encodes everything at its first sync) writes the same bytes.
func TestIncrementalSyncWritesTheWholeStore(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	want := map[string]int64{}
	for round := 0; round < 20; round++ {
		for i := 0; i < 30; i++ {
			k := "file:/d#" + string(rune('a'+(round*7+i*13)%40))
			switch (round + i) % 5 {
			case 0:
				s.Delete(k)
				delete(want, k)
			default:
				off := int64(round*100 + i)
				s.Put(k, positions.Position{Offset: off, Last: map[string]int64{`{a="\"q\""}`: off}})
				want[k] = off
			}
		}
		if round%3 == 0 {
			mustSync(t, s)
		}
	}
	mustSync(t, s)
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Version   int                           `json:"version"`
		Positions map[string]positions.Position `json:"positions"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("the file is not JSON: %v\n%s", err, b)
	}
	if f.Version != 1 || len(f.Positions) != len(want) {
		t.Fatalf("version %d, %d positions; want 1, %d", f.Version, len(f.Positions), len(want))
	}
	for k, off := range want {
		if p := f.Positions[k]; p.Offset != off || p.Last[`{a="\"q\""}`] != off {
			t.Errorf("%s: %+v, want offset %d", k, p, off)
		}
	}
	again := open(t, dir)
	again.Put("file:/d#a", f.Positions["file:/d#a"]) // same value: a change to sync
	if _, ok := want["file:/d#a"]; !ok {
		again.Delete("file:/d#a")
	}
	mustSync(t, again)
	b2, _ := os.ReadFile(again.Path())
	var f2 struct {
		Positions map[string]positions.Position `json:"positions"`
	}
	if err := json.Unmarshal(b2, &f2); err != nil || len(f2.Positions) != len(want) {
		t.Errorf("reopened store wrote %d positions (%v), want %d", len(f2.Positions), err, len(want))
	}
}

// A sync after only a new key came, or only a key went, writes exactly the
// keys there are: the file's key order is kept between syncs and must
// follow both.
func TestSyncFollowsKeysComingAndGoing(t *testing.T) {
	s := open(t, t.TempDir())
	read := func() []string {
		t.Helper()
		mustSync(t, s)
		b, err := os.ReadFile(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		var f struct{ Positions map[string]positions.Position }
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("the file is not JSON: %v\n%s", err, b)
		}
		return slices.Sorted(maps.Keys(f.Positions))
	}
	s.Put("file:/d#b", positions.Position{Offset: 1})
	if got := read(); !slices.Equal(got, []string{"file:/d#b"}) {
		t.Fatalf("keys %q", got)
	}
	s.Put("file:/d#a", positions.Position{Offset: 2})
	if got := read(); !slices.Equal(got, []string{"file:/d#a", "file:/d#b"}) {
		t.Fatalf("after a new key: keys %q", got)
	}
	s.Delete("file:/d#b")
	if got := read(); !slices.Equal(got, []string{"file:/d#a"}) {
		t.Fatalf("after a key went: keys %q", got)
	}
}
