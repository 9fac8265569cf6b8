package journal

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// archivedName is the rotated fixture's archived file, whose name journald
// made from its seqnum_id, first seqnum and first realtime.
var archivedName = func() string {
	m, _ := filepath.Glob("testdata/rotated/system@*.journal.zst")
	if len(m) != 1 {
		return "missing"
	}
	return strings.TrimSuffix(filepath.Base(m[0]), ".journal.zst")
}()

func allCursors(t *testing.T) []string { return readLines(t, "testdata/rotated/all.cursors") }

func TestRotatedPairReadsAsOne(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "rotated/system", dir)
	fixture(t, "rotated/"+archivedName, dir)
	want := allCursors(t)
	if len(want) < 60 {
		t.Fatalf("golden holds %d entries", len(want))
	}
	r := open(t, Options{Dirs: []string{dir}})
	if got := cursors(readAll(t, r)); !slices.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	ids := fixtureIDs(t)
	wantA := append(readLines(t, "testdata/rotated/"+archivedName+".match-a"), readLines(t, "testdata/rotated/system.match-a")...)
	r = open(t, Options{Dirs: []string{dir}, Match: "CONTAINER_ID_FULL=" + ids["a"]})
	if got := cursors(readAll(t, r)); !slices.Equal(got, wantA) {
		t.Fatalf("match a: got %d entries, want %d\n%s", len(got), len(wantA), strings.Join(got, "\n"))
	}
}

// setState rewrites the state byte of a journal file, as journald does
// when it takes a file online or archives it.
func setState(t *testing.T, path string, state byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{state}, hdrState); err != nil {
		t.Fatal(err)
	}
}

func setNEntries(t *testing.T, path string, n uint64) { setU64(t, path, hdrNEntries, n) }

func setU64(t *testing.T, path string, off int64, n uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(binary.LittleEndian.AppendUint64(nil, n), off); err != nil {
		t.Fatal(err)
	}
}

// TestFollowRotation plays journald's rotation: system.journal, online and
// read to its end, is archived and renamed system@….journal and a new
// system.journal takes the next entries.
func TestFollowRotation(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	active := filepath.Join(dir, "system.journal")
	old := fixture(t, "rotated/"+archivedName, tmp)
	if err := os.Rename(old, active); err != nil {
		t.Fatal(err)
	}
	setState(t, active, stateOnline)
	want := allCursors(t)

	r := open(t, Options{Dirs: []string{dir}})
	first := cursors(readAll(t, r))
	if len(first) == 0 || !slices.Equal(first, want[:len(first)]) {
		t.Fatalf("before rotation: %q", first)
	}

	setState(t, active, stateArchived)
	if err := os.Rename(active, filepath.Join(dir, archivedName+".journal")); err != nil {
		t.Fatal(err)
	}
	fixture(t, "rotated/system", dir)
	rest := cursors(readAll(t, r))
	if got := append(first, rest...); !slices.Equal(got, want) {
		t.Fatalf("across rotation:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if g := r.Gaps(); g != 0 {
		t.Fatalf("%d gaps", g)
	}
	// The archived file is closed once read; it is not read again.
	if len(r.sources) != 1 || readAll(t, r) != nil {
		t.Fatalf("%d files open", len(r.sources))
	}
}

// TestFollowGrowth plays journald appending to a file: the file is cut
// where the objects of entry k+1 begin and its entry count lowered to k;
// then the rest is written and the count raised, in that order, as journald
// does. The reader maps the grown file again and carries on.
func TestFollowGrowth(t *testing.T) {
	full, err := os.ReadFile(fixture(t, "compact-keyed-zstd", ""))
	if err != nil {
		t.Fatal(err)
	}
	want := readExport(t, "testdata/compact-keyed-zstd.export")
	const k = 8
	cut := entryBoundary(t, full, k)
	dir := t.TempDir()
	path := filepath.Join(dir, "system.journal")
	if err := os.WriteFile(path, full[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	setNEntries(t, path, k)

	r := open(t, Options{Dirs: []string{dir}})
	gs := readAll(t, r)
	if len(gs) != k {
		t.Fatalf("%d entries before growth, want %d", len(gs), k)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(full[cut:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	setNEntries(t, path, uint64(len(want)))
	gs = append(gs, readAll(t, r)...)
	if len(gs) != len(want) {
		t.Fatalf("%d entries after growth, want %d", len(gs), len(want))
	}
	for i, g := range gs {
		if g.cursor.String() != want[i].meta["__CURSOR"] {
			t.Fatalf("entry %d: %s, want %s", i, g.cursor, want[i].meta["__CURSOR"])
		}
	}
}

// entryBoundary returns the offset of the first DATA or ENTRY object
// written after the k-th ENTRY object: everything before it is what the
// file held when it held k entries.
func entryBoundary(t *testing.T, b []byte, k int) int {
	le := binary.LittleEndian
	off := le.Uint64(b[hdrHeaderSize:])
	tail := le.Uint64(b[hdrTailObjectOffset:])
	entries := 0
	for off <= tail {
		typ := b[off]
		if entries == k && (typ == objData || typ == objEntry) {
			return int(off)
		}
		if typ == objEntry {
			entries++
		}
		off += (le.Uint64(b[off+objSize:]) + 7) &^ 7
	}
	t.Fatalf("no boundary after entry %d", k)
	return 0
}

func TestAfterResumes(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "rotated/system", dir)
	fixture(t, "rotated/"+archivedName, dir)
	want := allCursors(t)
	for _, i := range []int{0, 5, 29, 30, 31, len(want) - 2, len(want) - 1} {
		after, err := ParseCursor(strings.TrimPrefix(want[i], "__CURSOR="))
		if err != nil {
			t.Fatal(err)
		}
		r := open(t, Options{Dirs: []string{dir}, After: after})
		if got := cursors(readAll(t, r)); !slices.Equal(got, want[i+1:]) {
			t.Fatalf("after %d: got %d entries, want %d", i, len(got), len(want)-i-1)
		}
		// A cursor of another journald resumes by time.
		other := after
		other.SeqnumID[0] ^= 0xff
		r = open(t, Options{Dirs: []string{dir}, After: other})
		var wantRT []string
		for _, c := range want {
			cc, _ := ParseCursor(strings.TrimPrefix(c, "__CURSOR="))
			if cc.Realtime > after.Realtime {
				wantRT = append(wantRT, c)
			}
		}
		if got := cursors(readAll(t, r)); !slices.Equal(got, wantRT) {
			t.Fatalf("after %d by realtime: got %d entries, want %d", i, len(got), len(wantRT))
		}
	}
}

func TestAfterWithMatch(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "rotated/system", dir)
	fixture(t, "rotated/"+archivedName, dir)
	ids := fixtureIDs(t)
	wantA := append(readLines(t, "testdata/rotated/"+archivedName+".match-a"), readLines(t, "testdata/rotated/system.match-a")...)
	for i := range wantA {
		after, _ := ParseCursor(strings.TrimPrefix(wantA[i], "__CURSOR="))
		r := open(t, Options{Dirs: []string{dir}, After: after, Match: "CONTAINER_ID_FULL=" + ids["a"]})
		if got := cursors(readAll(t, r)); !slices.Equal(got, wantA[i+1:]) {
			t.Fatalf("after match %d: got %d, want %d", i, len(got), len(wantA)-i-1)
		}
	}
}

// TestGapAfterVacuum: the entries after After lived in a file deleted
// before the reader started.
func TestGapAfterVacuum(t *testing.T) {
	dir := t.TempDir()
	newFile := fixture(t, "rotated/system", dir)
	want := allCursors(t)
	after, _ := ParseCursor(strings.TrimPrefix(want[4], "__CURSOR="))
	r := open(t, Options{Dirs: []string{dir}, After: after})
	gs := readAll(t, r)
	head := gs[0].cursor.Seqnum
	if g := r.Gaps(); g != head-after.Seqnum-1 {
		t.Fatalf("gaps %d, want %d (after %d, file starts at %d)", g, head-after.Seqnum-1, after.Seqnum, head)
	}
	if g := r.Gaps(); g != 0 {
		t.Fatalf("gaps not reset: %d", g)
	}
	_ = newFile
}

// TestGapWhileFollowing: the reader saw 10 entries of the active file; the
// file then went (rotated and vacuumed) before its later entries were
// seen, and the next file starts further on.
func TestGapWhileFollowing(t *testing.T) {
	dir := t.TempDir()
	active := filepath.Join(dir, "system.journal")
	if err := os.Rename(fixture(t, "rotated/"+archivedName, t.TempDir()), active); err != nil {
		t.Fatal(err)
	}
	setState(t, active, stateOnline)
	setNEntries(t, active, 10)
	setU64(t, active, hdrTailEntrySeqnum, 10) // the file's first entry is seqnum 1
	r := open(t, Options{Dirs: []string{dir}})
	gs := readAll(t, r)
	if len(gs) != 10 {
		t.Fatalf("%d entries", len(gs))
	}
	last := gs[9].cursor.Seqnum
	os.Remove(active)
	fixture(t, "rotated/system", dir)
	gs = readAll(t, r)
	if g, want := r.Gaps(), gs[0].cursor.Seqnum-last-1; g != want || want == 0 {
		t.Fatalf("gaps %d, want %d", g, want)
	}
}

// TestDeletedFileStillRead: a file deleted while open is read to its end
// through the mapping.
func TestDeletedFileStillRead(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "rotated/system", dir)
	old := fixture(t, "rotated/"+archivedName, dir)
	r := open(t, Options{Dirs: []string{dir}})
	var e Entry
	var got []string
	for range 3 {
		if ok, err := r.Next(&e); !ok || err != nil {
			t.Fatal(ok, err)
		}
		got = append(got, "__CURSOR="+e.Cursor.String())
	}
	if err := os.Remove(old); err != nil {
		t.Fatal(err)
	}
	got = append(got, cursors(readAll(t, r))...)
	if want := allCursors(t); !slices.Equal(got, want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	if g := r.Gaps(); g != 0 {
		t.Fatalf("gaps %d", g)
	}
}

func TestMissingRootSkippedUnreadableRootFails(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "compact-keyed-zstd", dir)
	r := open(t, Options{Dirs: []string{filepath.Join(dir, "nope"), dir}})
	if len(readAll(t, r)) == 0 {
		t.Fatal("no entries")
	}
	file := filepath.Join(dir, "compact-keyed-zstd.journal")
	if _, err := Open(Options{Dirs: []string{file}}); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("root that is a file: %v", err)
	}
	if _, err := Open(Options{Dirs: []string{dir}, Match: "novalue"}); err == nil {
		t.Fatal("bad match accepted")
	}
}

func TestMachineIDSubdirectory(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "3d1219c7c4c5404aaa1f6d2a48adfda4")
	os.Mkdir(sub, 0o755)
	fixture(t, "compact-keyed-zstd", sub)
	deeper := filepath.Join(sub, "deeper")
	os.Mkdir(deeper, 0o755)
	fixture(t, "regular-keyed", deeper) // two levels down: not read
	r := open(t, Options{Dirs: []string{root}})
	if got, want := len(readAll(t, r)), len(readExport(t, "testdata/compact-keyed-zstd.export")); got != want {
		t.Fatalf("%d entries, want %d", got, want)
	}
}

func TestCopiesReadOnce(t *testing.T) {
	dir := t.TempDir()
	p := fixture(t, "compact-keyed-zstd", dir)
	b, _ := os.ReadFile(p)
	os.WriteFile(filepath.Join(dir, "copy.journal"), b, 0o644)
	r := open(t, Options{Dirs: []string{dir}})
	if got, want := len(readAll(t, r)), len(readExport(t, "testdata/compact-keyed-zstd.export")); got != want {
		t.Fatalf("%d entries, want %d", got, want)
	}
}

func TestClosedReader(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "compact-keyed-zstd", dir)
	r := open(t, Options{Dirs: []string{dir}})
	r.Close()
	var e Entry
	if _, err := r.Next(&e); !errors.Is(err, errClosed) {
		t.Fatal(err)
	}
}
