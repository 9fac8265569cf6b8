package journal

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFieldsFilter(t *testing.T) {
	for _, name := range variants {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fixture(t, name, dir)
			want := readExport(t, filepath.Join("testdata", name+".export"))
			wanted := []string{"MESSAGE", "PRIORITY", "EXTRA"}
			r := open(t, Options{Dirs: []string{dir}, Fields: wanted[:2]})
			var e Entry
			sawLarge := false
			for i := 0; ; i++ {
				ok, err := r.Next(&e)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					if i != len(want) {
						t.Fatalf("%d entries, want %d", i, len(want))
					}
					break
				}
				var got, exp [][2]string
				for k, v := range e.All() {
					got = append(got, [2]string{string(k), string(v)})
				}
				for _, f := range want[i].fields {
					if slices.Contains(wanted[:2], f[0]) {
						exp = append(exp, f)
					}
				}
				if !slices.Equal(got, exp) {
					t.Fatalf("entry %d: got %q, want %q", i, got, exp)
				}
				if _, ok := e.Field("EXTRA"); ok {
					t.Fatalf("entry %d: EXTRA not asked for", i)
				}
				if m, _ := e.Field("MESSAGE"); len(m) > 3000 {
					sawLarge = true // a compressed payload, decompressed
				}
			}
			if !sawLarge {
				t.Fatal("the large (compressed) message was not seen")
			}
		})
	}
}

func TestEntryAccessors(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "compact-keyed-zstd", dir)
	r := open(t, Options{Dirs: []string{dir}, Match: "FOO=2"})
	var e Entry
	if ok, err := r.Next(&e); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The entry with a field given twice: Field returns the first.
	if v, ok := e.Field("FOO"); !ok || string(v) != "1" {
		t.Fatalf("FOO = %q, %v", v, ok)
	}
	n := 0
	for k := range e.All() {
		if string(k) == "FOO" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("FOO %d times", n)
	}
	if _, ok := e.Field("NOPE"); ok {
		t.Fatal("absent field found")
	}
	if e.Len() < 10 {
		t.Fatalf("%d fields", e.Len())
	}
	if got := e.Time(); got.UnixMicro() != int64(e.Realtime) || got.Before(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("time %v", got)
	}
}

func TestCursorString(t *testing.T) {
	const s = "s=267aa0608bab47f384ab2fd45d3c71a0;i=1;b=e6a7f8d8473842188e4ddc15d43692d5;m=182f328c;t=661f003aeb1af;x=6feaf0995aac02b1"
	c, err := ParseCursor(s)
	if err != nil {
		t.Fatal(err)
	}
	if c.Seqnum != 1 || c.Monotonic != 0x182f328c || c.Realtime != 0x661f003aeb1af || c.XorHash != 0x6feaf0995aac02b1 || c.SeqnumID[0] != 0x26 || c.BootID[15] != 0xd5 {
		t.Fatalf("%+v", c)
	}
	if c.String() != s {
		t.Fatalf("round trip: %s", c)
	}
	if c.IsZero() || !(Cursor{}).IsZero() {
		t.Fatal("IsZero")
	}
	// Unknown keys and any order are fine.
	c2, err := ParseCursor("x=6feaf0995aac02b1;t=661f003aeb1af;m=182f328c;b=e6a7f8d8473842188e4ddc15d43692d5;i=1;s=267aa0608bab47f384ab2fd45d3c71a0;z=whatever")
	if err != nil || c2 != c {
		t.Fatalf("%v %+v", err, c2)
	}
	if c, err := ParseCursor("t=5"); err != nil || c.Realtime != 5 {
		t.Fatal(err)
	}
}

func TestParseCursorErrors(t *testing.T) {
	for in, want := range map[string]string{
		"":                                       "not key=value",
		"s=00;i=1":                               "bad s value",
		"s=zz7aa0608bab47f384ab2fd45d3c71a0;i=1": "bad s value",
		"s=267aa0608bab47f384ab2fd45d3c71a0;i=q": "bad i value",
		"s=267aa0608bab47f384ab2fd45d3c71a0":     "needs s= and i=, or t=",
		"i=1;m=2":                                "needs",
		"t=-1":                                   "bad t value",
		"junk":                                   "not key=value",
	} {
		_, err := ParseCursor(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseCursor(%q) = %v, want %q", in, err, want)
		}
	}
}
