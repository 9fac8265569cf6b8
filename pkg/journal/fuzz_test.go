package journal

import (
	"encoding/binary"
	"os"
	"testing"
)

// memReader reads journal files held in memory, without directories.
func memReader(o Options, files ...*file) *Reader {
	r := newReader(o)
	for _, f := range files {
		r.addSource(f)
	}
	return r
}

// usedPart cuts a fixture to its objects: the tail of the file journald
// allocated but did not use yet is zeros, and fuzzing it is wasted work.
func usedPart(t testing.TB, name string) []byte {
	b, err := os.ReadFile(fixture(t, name, ""))
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	tail := le.Uint64(b[hdrTailObjectOffset:])
	return b[:tail+le.Uint64(b[tail+objSize:])]
}

// FuzzReadFile reads whatever the fuzzer makes of a journal file, with and
// without a match and a field filter. It calls the reader's internals
// directly, not Next, whose recover would hide a panic.
func FuzzReadFile(f *testing.F) {
	f.Add(usedPart(f, "compact-keyed-zstd"))
	f.Add(usedPart(f, "regular-jenkins"))
	f.Add(usedPart(f, "compact-lz4"))
	f.Add(usedPart(f, "regular-xz"))
	opts := []Options{
		{},
		{Match: "CONTAINER_NAME=a", Fields: []string{"MESSAGE", "PRIORITY"}},
		{Match: "PRIORITY=6", After: Cursor{Seqnum: 5, Realtime: 1}},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, o := range opts {
			mf, err := newMemFile("fuzz.journal", b)
			if err != nil {
				return
			}
			r := memReader(o, mf)
			var e Entry
			for range 2000 {
				ok, err := r.next(&e)
				if !ok && err == nil {
					break
				}
				for range e.All() {
				}
			}
			r.Close()
		}
	})
}

func TestMemFileMatchesFixture(t *testing.T) {
	mf, err := newMemFile("mem", usedPart(t, "compact-keyed-zstd"))
	if err != nil {
		t.Fatal(err)
	}
	r := memReader(Options{}, mf)
	defer r.Close()
	if got, want := len(readAll(t, r)), len(readExport(t, "testdata/compact-keyed-zstd.export")); got != want {
		t.Fatalf("%d entries, want %d", got, want)
	}
}

// FuzzParseCursor: whatever parses prints back to a cursor that parses to
// the same value.
func FuzzParseCursor(f *testing.F) {
	f.Add("s=267aa0608bab47f384ab2fd45d3c71a0;i=1;b=e6a7f8d8473842188e4ddc15d43692d5;m=182f328c;t=661f003aeb1af;x=6feaf0995aac02b1")
	f.Add("t=5;z=1")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		c2, err := ParseCursor(c.String())
		if err != nil || c2 != c {
			t.Fatalf("%q -> %s -> %v %+v", s, c, err, c2)
		}
	})
}
