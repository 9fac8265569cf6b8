package source

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
)

// A container removed (its log deleted) before Loki acknowledged its lines,
// with podtail restarted meanwhile: the spool's link still holds the log, a
// new scheduler reads it from the stored position, and once everything is
// acknowledged the link goes.
func TestSpoolKeepsRemovedContainersLog(t *testing.T) {
	dataDir := t.TempDir()
	store := openStore(t, dataDir)
	spoolDir := filepath.Join(dataDir, "spool")
	sp := openSpool(t, spoolDir)
	f := newSchedFixture(t, "start", store, cri(0, Stdout, "F", "a"), cri(1, Stdout, "F", "b"))
	f.s.cfg.Spool = sp
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	got := f.sink.wait(2)
	got[0].Ack.Ack(got[0].Pos) // Loki has "a" only
	f.lf.append(cri(2, Stdout, "F", "c"))
	f.sink.wait(3)
	if err := os.Remove(f.lf.path); err != nil { // podman rm
		t.Fatal(err)
	}
	f.stop() // podtail stops with "b" and "c" unacknowledged

	sp2 := openSpool(t, spoolDir)
	g := newSchedFixture(t, "start", store)
	g.s.cfg.Spool = sp2
	g.s.Sync(nil) // the container is gone
	got = g.sink.wait(2)
	if l := lines(got); !slices.Equal(l, []string{"b", "c"}) {
		t.Fatalf("after the restart, lines %q; want [b c]", l)
	}
	g.waitIdle() // read to its end: the container is gone
	g.s.Sync(nil)
	if _, err := os.Stat(filepath.Join(spoolDir, testID+".log")); err != nil {
		t.Fatalf("spool link gone before its lines were acknowledged: %v", err)
	}
	got[1].Ack.Ack(got[1].Pos)
	g.s.Sync(nil)
	if _, err := os.Stat(filepath.Join(spoolDir, testID+".log")); !os.IsNotExist(err) {
		t.Errorf("spool link still there after everything was acknowledged: %v", err)
	}
	if gone := sp2.Gone(nil); len(gone) != 0 {
		t.Errorf("still spooled: %v", gone)
	}
}

// Where hard links cannot be made (data_dir on another mount), a removed
// container's undelivered output is copied into the spool, at its offsets,
// by the reader that still holds the deleted log open; a restart reads on
// from the copy.
func TestSpoolCopiesRemovedContainersLogWithoutLinks(t *testing.T) {
	dataDir := t.TempDir()
	store := openStore(t, dataDir)
	spoolDir := filepath.Join(dataDir, "spool")
	sp := openSpool(t, spoolDir)
	sp.copies = true // as after EXDEV
	f := newSchedFixture(t, "start", store, cri(0, Stdout, "F", "a"), cri(1, Stdout, "F", "b"))
	f.s.cfg.Spool = sp
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	got := f.sink.wait(2)
	if _, err := os.Stat(filepath.Join(spoolDir, testID+".log")); !os.IsNotExist(err) {
		t.Fatalf("linked although links are off: %v", err)
	}
	got[0].Ack.Ack(got[0].Pos)                   // Loki has "a" only
	if err := os.Remove(f.lf.path); err != nil { // podman rm
		t.Fatal(err)
	}
	f.s.Sync(nil) // the removal
	eventually(t, "the spool copy recorded", func() bool {
		_, err := os.Stat(filepath.Join(spoolDir, testID+".json"))
		return err == nil
	})
	f.stop()

	sp2 := openSpool(t, spoolDir)
	g := newSchedFixture(t, "start", store)
	g.s.cfg.Spool = sp2
	g.s.Sync(nil)
	got = g.sink.wait(1)
	if l := lines(got); !slices.Equal(l, []string{"b"}) {
		t.Fatalf("after the restart, lines %q; want [b]", l)
	}
	got[0].Ack.Ack(got[0].Pos)
	eventually(t, "the copy released once acknowledged", func() bool {
		g.s.Sync(nil)
		_, err := os.Stat(filepath.Join(spoolDir, testID+".log"))
		return os.IsNotExist(err)
	})
}

// A container removed while its reader still drains the deleted log through
// its descriptor: the spool's link is another path to the same log, and the
// reader goes on; no second reader starts on the link and sends again what
// the first has in flight.
func TestSpoolDoesNotReplaceADrainingReader(t *testing.T) {
	dataDir := t.TempDir()
	store := openStore(t, dataDir)
	sp, err := OpenSpool(filepath.Join(dataDir, "spool"), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	f := newSchedFixture(t, "start", store, cri(0, Stdout, "F", "a"), cri(1, Stdout, "F", "b"))
	f.s.cfg.Spool = sp
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	f.sink.wait(2)                               // in flight, not acknowledged
	if err := os.Remove(f.lf.path); err != nil { // podman rm
		t.Fatal(err)
	}
	f.s.Sync(nil) // the container is gone; its log is in the spool
	f.waitIdle()
	if got := lines(f.sink.entries()); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("lines %q, want [a b] once each", got)
	}
}

// A journald container removed while podtail was down (or before it had
// delivered everything) is still read after a restart: the spool records
// its target, and the journal keeps its entries. The soak lost the tails
// of containers removed within seconds of a SIGKILL.
func TestSpoolReadsRemovedJournaldContainerAfterRestart(t *testing.T) {
	dataDir := t.TempDir()
	store := openStore(t, dataDir)
	spoolDir := filepath.Join(dataDir, "spool")
	root := journalDirOf(t, conmonFixture)
	sp := openSpool(t, spoolDir)
	f := newSchedFixture(t, "start", store)
	f.s.cfg.Spool, f.s.cfg.Journal = sp, Journal{Dirs: []string{root}}
	tg := journalTarget("d")
	tg.StartedAt = started1
	f.s.Sync([]discovery.Target{tg})
	first := f.sink.wait(2)
	first[0].Ack.Ack(first[0].Pos) // Loki has the first line only
	eventually(t, "the first line's position stored", func() bool {
		p, ok := store.Get(Key(tg.ID))
		return ok && p.Cursor != ""
	})
	f.stop() // podtail killed; the container is removed meanwhile

	sp2 := openSpool(t, spoolDir)
	g := newSchedFixture(t, "start", store)
	g.s.cfg.Spool, g.s.cfg.Journal = sp2, Journal{Dirs: []string{root}}
	g.s.Sync(nil) // the container is gone
	again := g.sink.wait(1)
	if got, want := lines(again)[0], lines(first)[1]; got != want {
		t.Fatalf("after the restart, first line %q; want %q (the first not acknowledged)", got, want)
	}
	eventually(t, "the removed container read to its end, acknowledged and released", func() bool {
		for _, e := range g.sink.entries() {
			e.Ack.Ack(e.Pos)
		}
		g.s.Sync(nil)
		_, err := os.Stat(filepath.Join(spoolDir, tg.ID+".json"))
		return os.IsNotExist(err)
	})
}

// A container stopped and removed between podtail's listing and its reader
// opening the log: the reader finds the log gone and ends without reading
// anything, and the spool's link, which a podtail before the restart made,
// is read once the removal is seen. (The soak lost such a tail: the ended
// run was taken for read to its end.)
func TestSpoolReadAfterTheLogVanishedUnderAListing(t *testing.T) {
	dataDir := t.TempDir()
	store := openStore(t, dataDir)
	spoolDir := filepath.Join(dataDir, "spool")
	sp := openSpool(t, spoolDir)
	f := newSchedFixture(t, "start", store, cri(0, Stdout, "F", "a"), cri(1, Stdout, "F", "b"))
	f.s.cfg.Spool = sp
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	got := f.sink.wait(2)
	got[0].Ack.Ack(got[0].Pos) // Loki has "a" only
	f.stop()                   // podtail killed

	// Meanwhile the container stopped and was removed: its log is gone,
	// but the restarted podtail's first listing still has it.
	if err := os.Remove(f.lf.path); err != nil {
		t.Fatal(err)
	}
	sp2 := openSpool(t, spoolDir)
	g := newSchedFixture(t, "start", store)
	g.s.cfg.Spool = sp2
	g.s.Sync([]discovery.Target{f.target(false, started1)})
	g.waitIdle()
	g.s.Sync(nil) // the removal
	if l := lines(g.sink.wait(1)); !slices.Equal(l, []string{"b"}) {
		t.Fatalf("after the restart, lines %q; want [b] from the spool", l)
	}
}

// openSpool opens the spool in dir, failing the test if it cannot.
func openSpool(t *testing.T, dir string) *Spool {
	t.Helper()
	sp, err := OpenSpool(dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return sp
}
