package journal

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// benchID is CONTAINER_ID_FULL of the "bench" container of
// testdata/bench.journal (fixturegen id bench).
func benchID(t testing.TB, dir string) string {
	t.Helper()
	r := open(t, Options{Dirs: []string{dir}, Fields: []string{"CONTAINER_NAME", "CONTAINER_ID_FULL"}})
	var e Entry
	for {
		ok, err := r.Next(&e)
		if !ok || err != nil {
			t.Fatal("no bench entry", err)
		}
		if n, _ := e.Field("CONTAINER_NAME"); string(n) == "bench" {
			id, _ := e.Field("CONTAINER_ID_FULL")
			return string(id)
		}
	}
}

func TestBenchFixture(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "bench", dir)
	golden := map[string]string{}
	for _, l := range readLines(t, "testdata/bench.golden") {
		k, v, _ := strings.Cut(l, " ")
		golden[k] = v
	}
	r := open(t, Options{Dirs: []string{dir}, Match: "CONTAINER_ID_FULL=" + benchID(t, dir)})
	cs := cursors(readAll(t, r))
	h := sha256.Sum256([]byte(strings.Join(cs, "\n") + "\n"))
	if fmt.Sprint(len(cs)) != golden["count"] || fmt.Sprintf("%x", h) != golden["sha256"] {
		t.Fatalf("%d entries, sha256 %x; journalctl: %v", len(cs), h, golden)
	}
	r = open(t, Options{Dirs: []string{dir}})
	if n := len(readAll(t, r)); fmt.Sprint(n) != golden["entries"] {
		t.Fatalf("%d entries in all, journalctl %s", n, golden["entries"])
	}
}

// BenchmarkReaderNext reads the 10,000 entries of one container out of
// bench.journal, keeping MESSAGE and PRIORITY: one op is one entry.
func BenchmarkReaderNext(b *testing.B) {
	dir := b.TempDir()
	fixture(b, "bench", dir)
	var bytes int
	benchNext(b, Options{
		Dirs:   []string{dir},
		Match:  "CONTAINER_ID_FULL=" + benchID(b, dir),
		Fields: []string{"MESSAGE", "PRIORITY"},
	}, func(e *Entry) {
		m, _ := e.Field("MESSAGE")
		p, _ := e.Field("PRIORITY")
		bytes += len(m) + len(p)
	})
	if bytes == 0 {
		b.Fatal("nothing read")
	}
}

// BenchmarkReaderNextAll reads every field of every entry.
func BenchmarkReaderNextAll(b *testing.B) {
	dir := b.TempDir()
	fixture(b, "bench", dir)
	benchNext(b, Options{Dirs: []string{dir}}, func(*Entry) {})
}

// benchNext times b.N calls of Next that return an entry, each handed to
// use, reading the journal again from the start (untimed) at its end.
func benchNext(b *testing.B, o Options, use func(*Entry)) {
	r, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	var e Entry
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ok, err := r.Next(&e)
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			b.StopTimer()
			r.Close()
			if r, err = Open(o); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			i--
			continue
		}
		use(&e)
	}
	b.StopTimer()
	r.Close()
}
