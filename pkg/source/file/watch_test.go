package file

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// One watcher serves many directories: a change in one pokes only its
// tailers, a stopped watch is not poked, and a directory not there yet is
// refused (its tailer polls).
func TestWatcherPokesTheDirectoryChanged(t *testing.T) {
	w, err := NewWatcher(nil)
	if err != nil {
		t.Skipf("inotify unavailable: %v", err)
	}
	defer w.Close()
	a, b := t.TempDir(), t.TempDir()
	chA, _, stopA, err := pokes(w, a)
	if err != nil {
		t.Fatal(err)
	}
	chA2, _, stopA2, err := pokes(w, a) // a second tailer of the same directory
	if err != nil {
		t.Fatal(err)
	}
	chB, _, stopB, err := pokes(w, b)
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()
	poked := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(500 * time.Millisecond):
			return false
		}
	}
	if err := os.WriteFile(filepath.Join(a, "x.log"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !poked(chA) || !poked(chA2) {
		t.Fatal("a write in a did not poke a's tailers")
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case <-chB:
		t.Error("a write in a poked b's tailer")
	default:
	}
	stopA()
	for len(chA2) > 0 {
		<-chA2
	}
	if err := os.WriteFile(filepath.Join(a, "y.log"), []byte("y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !poked(chA2) {
		t.Error("stopping one tailer's watch stopped the other's")
	}
	stopA2()
	if err := os.WriteFile(filepath.Join(b, "z.log"), []byte("z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !poked(chB) {
		t.Error("a write in b did not poke b's tailer")
	}
	if _, err := w.Watch(filepath.Join(a, "missing"), func(bool) {}); err == nil {
		t.Error("watching a directory that does not exist succeeded")
	}
}

// A write is a change; a new name, a rename and a removal (what a rotation
// does) are renames too, which end the wait of a tailer held back by the
// sink.
func TestWatcherTellsRenamesFromWrites(t *testing.T) {
	w, err := NewWatcher(nil)
	if err != nil {
		t.Skipf("inotify unavailable: %v", err)
	}
	defer w.Close()
	dir := t.TempDir()
	f := filepath.Join(dir, "app.log")
	if err := os.WriteFile(f, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, renamed, stop, err := pokes(w, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	poked := func(ch <-chan struct{}, within time.Duration) bool {
		select {
		case <-ch:
			return true
		case <-time.After(within):
			return false
		}
	}
	drain := func() {
		time.Sleep(50 * time.Millisecond)
		for len(changed) > 0 || len(renamed) > 0 {
			select {
			case <-changed:
			case <-renamed:
			}
		}
	}
	out, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := out.WriteString("b\n"); err != nil {
		t.Fatal(err)
	}
	if !poked(changed, time.Second) {
		t.Fatal("a write was not a change")
	}
	if poked(renamed, 100*time.Millisecond) {
		t.Error("a write was a rename")
	}
	for _, step := range []struct {
		what string
		do   func() error
	}{
		{"rename", func() error { return os.Rename(f, f+".1") }},
		{"create", func() error { return os.WriteFile(f, []byte("c\n"), 0o644) }},
		{"remove", func() error { return os.Remove(f + ".1") }},
	} {
		drain()
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		if !poked(renamed, time.Second) {
			t.Errorf("a %s was not a rename", step.what)
		}
	}
}

// pokes watches dir with channels: changed (1-buffered) is poked on any
// change, renamed on each rename.
func pokes(w *Watcher, dir string) (changed, renamed chan struct{}, stop func(), err error) {
	changed, renamed = make(chan struct{}, 1), make(chan struct{}, 100)
	stop, err = w.Watch(dir, func(r bool) {
		select {
		case changed <- struct{}{}:
		default:
		}
		if r {
			renamed <- struct{}{}
		}
	})
	return changed, renamed, stop, err
}
