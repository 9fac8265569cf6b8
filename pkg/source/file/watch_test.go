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
	chA, stopA, err := w.Watch(a)
	if err != nil {
		t.Fatal(err)
	}
	chA2, stopA2, err := w.Watch(a) // a second tailer of the same directory
	if err != nil {
		t.Fatal(err)
	}
	chB, stopB, err := w.Watch(b)
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
	if _, _, err := w.Watch(filepath.Join(a, "missing")); err == nil {
		t.Error("watching a directory that does not exist succeeded")
	}
}
