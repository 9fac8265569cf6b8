package journal

import "testing"

// Readers given one Maps map each file once, whatever their number, and
// the mappings go when the last Reader lets them go; their entries are
// what a Reader of its own reads.
func TestMapsSharedBetweenReaders(t *testing.T) {
	dir := t.TempDir()
	fixture(t, "compact-keyed-zstd", dir)
	var maps Maps
	own := readAll(t, open(t, Options{Dirs: []string{dir}}))
	var rs []*Reader
	for range 5 {
		r := open(t, Options{Dirs: []string{dir}, Maps: &maps})
		rs = append(rs, r)
		if got := cursors(readAll(t, r)); len(got) != len(own) {
			t.Fatalf("a Reader sharing mappings read %d entries, one of its own %d", len(got), len(own))
		}
	}
	if n := maps.Len(); n != 1 {
		t.Errorf("5 Readers of one file hold %d mappings, want 1", n)
	}
	// Trimmed, the mapping reads the same: its pages come back on use.
	maps.Trim()
	r := open(t, Options{Dirs: []string{dir}, Maps: &maps})
	if got := readAll(t, r); len(got) != len(own) || got[len(got)-1].cursor != own[len(own)-1].cursor {
		t.Errorf("after Trim a Reader read %d entries, want %d", len(got), len(own))
	}
	rs = append(rs, r)
	for _, r := range rs {
		r.Close()
	}
	if n := maps.Len(); n != 0 {
		t.Errorf("%d mappings left after every Reader closed", n)
	}
}
