package journal

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// drain reads r to the end, collecting entries and errors; it fails if
// the reader does not come to an end.
func drain(t *testing.T, r *Reader) (n int, errs []error) {
	t.Helper()
	var e Entry
	for range 100000 {
		ok, err := r.Next(&e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			return n, errs
		}
		n++
	}
	t.Fatal("reader does not stop")
	return
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBadSignatureSkipped(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "compact-keyed-zstd", dir)
	bad := filepath.Join(dir, "bad.journal")
	writeFile(t, bad, []byte(strings.Repeat("X", 4096)))
	r := open(t, Options{Dirs: []string{dir}})
	n, errs := drain(t, r)
	if want := len(readExport(t, "testdata/compact-keyed-zstd.export")); n != want {
		t.Fatalf("%d entries, want %d", n, want)
	}
	var fe *FileError
	if len(errs) != 1 || !errors.As(errs[0], &fe) || fe.Path != bad || !strings.Contains(errs[0].Error(), "signature") {
		t.Fatalf("errors: %v", errs)
	}
	// Reported once, not again on the next scans.
	if _, errs := drain(t, r); len(errs) != 0 {
		t.Fatalf("again: %v", errs)
	}
}

func TestUnknownIncompatibleFlagRefused(t *testing.T) {
	dir := t.TempDir()
	p := fixture(t, "compact-keyed-zstd", dir)
	b, _ := os.ReadFile(p)
	binary.LittleEndian.PutUint32(b[hdrIncompatibleFlags:], binary.LittleEndian.Uint32(b[hdrIncompatibleFlags:])|1<<5)
	writeFile(t, p, b)
	r := open(t, Options{Dirs: []string{dir}})
	n, errs := drain(t, r)
	if n != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), "0x20") || !strings.Contains(errs[0].Error(), p) {
		t.Fatalf("%d entries, errors %v", n, errs)
	}
}

func TestNotYetInitialisedFileWaits(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "system.journal")
	writeFile(t, p, make([]byte, 4096)) // created, header not written yet
	r := open(t, Options{Dirs: []string{dir}})
	if n, errs := drain(t, r); n != 0 || len(errs) != 0 {
		t.Fatalf("%d entries, errors %v", n, errs)
	}
	b, _ := os.ReadFile(fixture(t, "compact-keyed-zstd", ""))
	writeFile(t, p, b)
	if n, errs := drain(t, r); n == 0 || len(errs) != 0 {
		t.Fatalf("%d entries, errors %v", n, errs)
	}
}

func TestTruncatedFile(t *testing.T) {
	for _, name := range variants {
		full, _ := os.ReadFile(fixture(t, name, ""))
		tail := binary.LittleEndian.Uint64(full[hdrTailObjectOffset:])
		for _, cut := range []uint64{300, 5000, tail / 2, tail*3/4 + 4} {
			dir := t.TempDir()
			p := filepath.Join(dir, "system.journal")
			writeFile(t, p, full[:cut])
			r := open(t, Options{Dirs: []string{dir}})
			n, errs := drain(t, r)
			if len(errs) == 0 {
				t.Fatalf("%s cut at %d: %d entries and no error", name, cut, n)
			}
			var fe *FileError
			if !errors.As(errs[0], &fe) || fe.Path != p {
				t.Fatalf("%s cut at %d: %v", name, cut, errs[0])
			}
		}
	}
}

// TestBadItemSkipped: an entry list item that is no entry costs that item
// only; the file's other entries are read.
func TestBadItemSkipped(t *testing.T) {
	full, _ := os.ReadFile(fixture(t, "regular-keyed", ""))
	le := binary.LittleEndian
	firstArray := le.Uint64(full[hdrEntryArrayOffset:])
	firstEntry := le.Uint64(full[firstArray+arrayItems:])
	data := le.Uint64(full[firstEntry+entryItems:])
	le.PutUint64(full[firstArray+arrayItems+8:], data) // the second entry
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "x.journal"), full)
	r := open(t, Options{Dirs: []string{dir}})
	n, errs := drain(t, r)
	if want := len(readExport(t, "testdata/regular-keyed.export")) - 1; n != want {
		t.Fatalf("%d entries, want %d", n, want)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "is DATA, want ENTRY") {
		t.Fatalf("errors %v", errs)
	}
}

// TestCorruptObjects points references at the wrong places.
func TestCorruptObjects(t *testing.T) {
	full, _ := os.ReadFile(fixture(t, "regular-keyed", ""))
	le := binary.LittleEndian
	firstArray := le.Uint64(full[hdrEntryArrayOffset:])
	firstEntry := le.Uint64(full[firstArray+arrayItems:])
	for _, tc := range []struct {
		name   string
		mangle func(b []byte)
		want   string
	}{
		{"item points at entry", func(b []byte) {
			le.PutUint64(b[firstEntry+entryItems:], firstEntry)
		}, "is ENTRY, want DATA"},
		{"item misaligned", func(b []byte) {
			le.PutUint64(b[firstEntry+entryItems:], firstEntry+3)
		}, "bad DATA object offset"},
		{"array loops", func(b []byte) {
			le.PutUint64(b[firstArray+arrayNext:], firstArray)
		}, "goes back"},
		{"object size huge", func(b []byte) {
			le.PutUint64(b[firstEntry+objSize:], 1<<62)
		}, "beyond the end"},
		{"object size overflows", func(b []byte) {
			le.PutUint64(b[firstEntry+objSize:], ^uint64(0)-8)
		}, "overflows"},
		{"array item zero", func(b []byte) {
			le.PutUint64(b[firstArray+arrayItems+8:], 0)
		}, "holds no entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), full...)
			tc.mangle(b)
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "x.journal"), b)
			r := open(t, Options{Dirs: []string{dir}})
			_, errs := drain(t, r)
			if len(errs) == 0 || !strings.Contains(errs[0].Error(), tc.want) || !strings.Contains(errs[0].Error(), "offset 0x") {
				t.Fatalf("errors %v, want one saying %q at an offset", errs, tc.want)
			}
		})
	}
}
