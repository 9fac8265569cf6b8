package source

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
)

// A container whose log is created and deleted before anybody asks for it
// (a --rm container gone before its create event arrives) is still readable
// through the Catcher, once, and only for the path asked for.
func TestCatcherHoldsALogDeletedBeforeItsReaderStarts(t *testing.T) {
	dir := t.TempDir()
	c := NewCatcher(zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, dir) }()
	defer func() { cancel(); <-done }()
	<-c.ready

	for _, id := range []string{"aaa", "bbb"} {
		log := filepath.Join(dir, id, "userdata", "ctr.log")
		if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(log, []byte(cri(0, Stdout, "F", id)), 0o600); err != nil {
			t.Fatal(err)
		}
		var f *os.File
		eventually(t, "the log caught", func() bool {
			c.mu.Lock()
			_, ok := c.held[id]
			c.mu.Unlock()
			return ok
		})
		if err := os.RemoveAll(filepath.Join(dir, id)); err != nil { // podman rm
			t.Fatal(err)
		}
		if c.Take(id, "/elsewhere/ctr.log") != nil {
			t.Error("handed over for another path")
		}
		if f = c.Take(id, log); f == nil {
			t.Fatalf("%s: not held", id)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(b) != cri(0, Stdout, "F", id) {
			t.Errorf("%s: read %q, %v", id, b, err)
		}
		if c.Take(id, log) != nil {
			t.Errorf("%s: handed over twice", id)
		}
	}
}
