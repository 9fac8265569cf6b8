package journal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podtail/podtail/pkg/journal/journaltest"
)

// The fixtures are journal files written by a real journald (see
// testdata/make-fixtures.sh), stored zstd-compressed; the golden files next
// to them are what journalctl printed for them.

// fixture decompresses testdata/NAME.journal.zst into dir (a new temporary
// directory if empty) and returns the file's path.
func fixture(t testing.TB, name, dir string) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	return journaltest.Unpack(t, filepath.Join("testdata", name+".journal.zst"), dir)
}

// exportEntry is one entry as journalctl -o export printed it.
type exportEntry struct {
	meta   map[string]string // __CURSOR, __REALTIME_TIMESTAMP, __MONOTONIC_TIMESTAMP, _BOOT_ID
	fields [][2]string       // the data fields, in order
}

// readExport parses the Journal Export Format: "NAME=value" lines, or for
// binary values NAME, newline, le64 length, the value, newline; a blank
// line ends an entry.
func readExport(t testing.TB, path string) []exportEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(b))
	var out []exportEntry
	cur := exportEntry{meta: map[string]string{}}
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			out = append(out, cur)
			cur = exportEntry{meta: map[string]string{}}
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok { // binary form
			var n uint64
			if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
				t.Fatal(err)
			}
			v := make([]byte, n+1)
			if _, err := io.ReadFull(r, v); err != nil {
				t.Fatal(err)
			}
			value = string(v[:n])
		}
		if strings.HasPrefix(name, "__") || name == "_BOOT_ID" {
			cur.meta[name] = value
			continue
		}
		cur.fields = append(cur.fields, [2]string{name, value})
	}
	return out
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// got is an entry as the Reader gave it, copied.
type got struct {
	cursor Cursor
	fields [][2]string
}

// readAll drains r, failing on any error.
func readAll(t testing.TB, r *Reader) []got {
	t.Helper()
	var out []got
	var e Entry
	for {
		ok, err := r.Next(&e)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if !ok {
			return out
		}
		g := got{cursor: e.Cursor}
		for k, v := range e.All() {
			g.fields = append(g.fields, [2]string{string(k), string(v)})
		}
		out = append(out, g)
	}
}

func cursors(gs []got) []string {
	var out []string
	for _, g := range gs {
		out = append(out, "__CURSOR="+g.cursor.String())
	}
	return out
}

func open(t testing.TB, o Options) *Reader {
	t.Helper()
	r, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
