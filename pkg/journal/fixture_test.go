package journal

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// The format variants journald wrote (or, for LZ4 and XZ, that were crafted
// from its files, see testdata/fixturegen), each checked against what
// journalctl printed for the same file.
var variants = []string{"compact-keyed-zstd", "regular-keyed", "regular-jenkins", "compact-lz4", "regular-xz"}

func TestFixturesMatchJournalctl(t *testing.T) {
	for _, name := range variants {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fixture(t, name, dir)
			want := readExport(t, filepath.Join("testdata", name+".export"))
			r := open(t, Options{Dirs: []string{dir}})
			gs := readAll(t, r)
			if len(gs) != len(want) {
				t.Fatalf("%d entries, journalctl printed %d", len(gs), len(want))
			}
			for i, g := range gs {
				w := want[i]
				if c := g.cursor.String(); c != w.meta["__CURSOR"] {
					t.Fatalf("entry %d: cursor %s, journalctl %s", i, c, w.meta["__CURSOR"])
				}
				if rt := strconv.FormatUint(g.cursor.Realtime, 10); rt != w.meta["__REALTIME_TIMESTAMP"] {
					t.Errorf("entry %d: realtime %s, journalctl %s", i, rt, w.meta["__REALTIME_TIMESTAMP"])
				}
				if mt := strconv.FormatUint(g.cursor.Monotonic, 10); mt != w.meta["__MONOTONIC_TIMESTAMP"] {
					t.Errorf("entry %d: monotonic %s, journalctl %s", i, mt, w.meta["__MONOTONIC_TIMESTAMP"])
				}
				if b := fmt.Sprintf("%x", g.cursor.BootID); b != w.meta["_BOOT_ID"] {
					t.Errorf("entry %d: boot id %s, journalctl %s", i, b, w.meta["_BOOT_ID"])
				}
				// journalctl prints _BOOT_ID from the entry header, not among the fields.
				fields := slices.DeleteFunc(slices.Clone(g.fields), func(f [2]string) bool { return f[0] == "_BOOT_ID" })
				if !slices.Equal(fields, w.fields) {
					t.Errorf("entry %d fields:\n got %q\nwant %q", i, fields, w.fields)
				}
			}
		})
	}
}

func TestMatchSelectsWhatJournalctlSelects(t *testing.T) {
	ids := fixtureIDs(t)
	for _, name := range variants {
		dir := t.TempDir()
		fixture(t, name, dir)
		for _, c := range []string{"a", "b", "c"} {
			t.Run(name+"/"+c, func(t *testing.T) {
				want := readLines(t, filepath.Join("testdata", name+".match-"+c))
				r := open(t, Options{Dirs: []string{dir}, Match: "CONTAINER_ID_FULL=" + ids[c]})
				gs := readAll(t, r)
				if got := cursors(gs); !slices.Equal(got, want) {
					t.Fatalf("match %s:\n got %q\nwant %q", c, got, want)
				}
				for _, g := range gs {
					if !slices.Contains(g.fields, [2]string{"CONTAINER_ID_FULL", ids[c]}) {
						t.Fatalf("entry %s lacks the match", g.cursor)
					}
				}
			})
		}
	}
}

// fixtureIDs reads the container IDs from the golden export: the entries
// whose CONTAINER_NAME is a, b or c.
func fixtureIDs(t *testing.T) map[string]string {
	ids := map[string]string{}
	for _, e := range readExport(t, filepath.Join("testdata", "compact-keyed-zstd.export")) {
		var name, id string
		for _, f := range e.fields {
			switch f[0] {
			case "CONTAINER_NAME":
				name = f[1]
			case "CONTAINER_ID_FULL":
				id = f[1]
			}
		}
		if name != "" {
			ids[name] = id
		}
	}
	if len(ids) != 3 {
		t.Fatalf("fixture containers: %v", ids)
	}
	return ids
}

func TestMatchAbsent(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "compact-keyed-zstd", dir)
	r := open(t, Options{Dirs: []string{dir}, Match: "CONTAINER_ID_FULL=nope"})
	if gs := readAll(t, r); len(gs) != 0 {
		t.Fatalf("%d entries for an absent match", len(gs))
	}
}
