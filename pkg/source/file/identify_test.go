package file

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podtail/podtail/pkg/source/positions"
)

// writeFile writes b to a new file and returns it open for reading.
func writeFile(t *testing.T, name string, b []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	must(t, os.WriteFile(path, b, 0o644))
	f, err := os.Open(path)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	must(t, err)
	must(t, zw.Close())
	return buf.Bytes()
}

// A file is identified by its head once it holds a whole line or a full
// fingerprint's worth; a gzip backup by its decompressed head, only once
// that head is whole (a backup still being compressed waits). The reader
// returned goes on where the head ends (gzip) or is the file itself.
func TestReadHead(t *testing.T) {
	long := []byte(strings.Repeat("x", 2*FingerprintSize)) // no newline, but a full head
	lines := numbered(1, 200)
	for _, tc := range []struct {
		name     string
		content  []byte
		gz       bool
		ok       bool
		wantHead []byte
	}{
		{"empty", nil, false, false, nil},
		{"partial line", []byte(`{"n":1`), false, false, nil},
		{"one line", []byte("{\"n\":1}\n"), false, true, []byte("{\"n\":1}\n")},
		{"long line", long, false, true, long[:FingerprintSize]},
		{"many lines", lines, false, true, lines[:FingerprintSize]},
		{"gzip", gzipped(t, lines), true, true, lines[:FingerprintSize]},
		{"gzip short and whole", gzipped(t, []byte("a\n")), true, true, []byte("a\n")},
		{"gzip being written", gzipped(t, lines)[:40], true, false, nil},
		{"not gzip", []byte("plain\n"), true, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, "f.log", tc.content)
			head, src, ok := readHead(f, tc.gz)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if !bytes.Equal(head, tc.wantHead) {
				t.Errorf("head %q…, want %q…", trunc(string(head)), trunc(string(tc.wantHead)))
			}
			if tc.gz {
				all, err := io.ReadAll(src)
				must(t, err)
				if want := lines; tc.name == "gzip" && !bytes.Equal(all, want) {
					t.Errorf("the gzip reader yields %d bytes, want the %d decompressed", len(all), len(want))
				}
			}
		})
	}
}

// identify: a head never seen is a new file keyed by its fingerprint; a
// head this process read resumes where it read to; a head with a stored
// position resumes at the acknowledged offset, or further if this process
// read further; another directory's positions are not looked at.
func TestIdentify(t *testing.T) {
	store, err := positions.Open(t.TempDir())
	must(t, err)
	const prefix = "file:/logs#"
	a := numbered(1, 100)
	b := numbered(101, 200)
	c := numbered(201, 300)
	id := newIdentifying()

	got := id.identify(a, prefix, store)
	if got.found || got.start != 0 || got.key != prefix+NewFingerprint(a).String() {
		t.Fatalf("new file: %+v", got)
	}
	id.remember(7, got)
	id.readTo[got.key] = 500
	if again := id.identify(a, prefix, store); !again.found || again.key != got.key || again.start != 500 {
		t.Fatalf("file read by this process: %+v, want found at 500", again)
	}
	if id.keyOf[7] != got.key {
		t.Fatalf("inode 7 not remembered as %s", got.key)
	}

	fb := NewFingerprint(b)
	store.Put(prefix+fb.String(), positions.Position{Offset: 300, Fingerprint: fb.String()})
	if stored := id.identify(b, prefix, store); !stored.found || stored.start != 300 {
		t.Fatalf("stored file: %+v, want found at 300", stored)
	}
	id.readTo[prefix+fb.String()] = 900
	if further := id.identify(b, prefix, store); further.start != 900 {
		t.Fatalf("read past the stored offset: start %d, want 900", further.start)
	}

	fc := NewFingerprint(c)
	store.Put("file:/other#"+fc.String(), positions.Position{Offset: 50, Fingerprint: fc.String()})
	if other := id.identify(c, prefix, store); other.found {
		t.Fatalf("another directory's position was taken: %+v", other)
	}
}
