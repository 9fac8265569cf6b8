package journal

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func expectSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no notification for %s", what)
	}
}

// settle empties ch once events stop arriving.
func settle(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

func TestWatcher(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "3d1219c7c4c5404aaa1f6d2a48adfda4")
	os.Mkdir(sub, 0o755)
	missing := filepath.Join(t.TempDir(), "later")
	w, err := NewWatcher([]string{root, missing})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ch, cancel := w.Subscribe()
	ch2, cancel2 := w.Subscribe()
	defer cancel2()
	if cap(ch) != 1 {
		t.Fatalf("capacity %d", cap(ch))
	}

	f := filepath.Join(sub, "system.journal")
	os.WriteFile(f, []byte("x"), 0o644)
	expectSignal(t, ch, "a file created in a machine-id directory")
	expectSignal(t, ch2, "the second subscriber")
	settle(ch)

	// journald's wake-up: ftruncate to the same size raises IN_MODIFY.
	if err := os.Truncate(f, 1); err != nil {
		t.Fatal(err)
	}
	expectSignal(t, ch, "ftruncate")
	settle(ch)

	// Rotation renames; vacuum deletes.
	os.Rename(f, filepath.Join(sub, "system@x.journal"))
	expectSignal(t, ch, "rename")
	settle(ch)
	os.Remove(filepath.Join(sub, "system@x.journal"))
	expectSignal(t, ch, "delete")
	settle(ch)

	// A machine-id directory made later is watched too.
	sub2 := filepath.Join(root, "11111111111111111111111111111111")
	os.Mkdir(sub2, 0o755)
	expectSignal(t, ch, "a new subdirectory")
	settle(ch)
	os.WriteFile(filepath.Join(sub2, "system.journal"), []byte("x"), 0o644)
	expectSignal(t, ch, "a file in the new subdirectory")
	settle(ch)

	// A root that did not exist is picked up when it appears.
	os.MkdirAll(filepath.Join(missing, "m"), 0o755)
	expectSignal(t, ch, "the missing root appearing")
	settle(ch)
	os.WriteFile(filepath.Join(missing, "m", "system.journal"), []byte("x"), 0o644)
	expectSignal(t, ch, "a file under the late root")
	settle(ch)

	cancel()
	settle(ch2)
	os.WriteFile(f, []byte("y"), 0o644)
	expectSignal(t, ch2, "after another subscriber left")
	select {
	case <-ch:
		t.Fatal("notified after cancel")
	case <-time.After(200 * time.Millisecond):
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal("second close:", err)
	}
}
