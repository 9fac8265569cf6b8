// Package journaltest gives tests the journal files that a real
// systemd-journald wrote for pkg/journal's fixtures
// (pkg/journal/testdata/make-fixtures.sh), stored zstd-compressed.
package journaltest

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Unpack decompresses the fixture src (a NAME.journal.zst) into dir as
// NAME.journal and returns that file's path.
func Unpack(t testing.TB, src, dir string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := zstd.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	path := filepath.Join(dir, filepath.Base(src[:len(src)-len(".zst")]))
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
