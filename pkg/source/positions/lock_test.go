package positions_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/source/positions"
)

// One holder at a time: a second LockDir on the same data_dir fails at once
// with a LockedError naming the data_dir, the lock file, the holder's pid
// and what it is; Unlock lets the next one in, and leaves the file naming
// no process.
func TestLockDirIsExclusive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := positions.LockDir(dir, "podtail run")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, positions.LockName)
	b, err := os.ReadFile(file)
	if err != nil || string(b) != strconv.Itoa(os.Getpid())+" podtail run\n" {
		t.Errorf("lock file holds %q (%v), want the pid and the holder", b, err)
	}

	done := make(chan error, 1)
	go func() { _, err := positions.LockDir(dir, "podtail positions forget"); done <- err }()
	var le *positions.LockedError
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a second LockDir waited for the lock instead of failing")
	}
	if !errors.As(err, &le) {
		t.Fatalf("second LockDir: %v, want a *LockedError", err)
	}
	if le.Dir != dir || le.File != file || le.PID != os.Getpid() || le.Holder != "podtail run" {
		t.Errorf("LockedError %+v", le)
	}
	want := "a podtail is running on " + dir + " (lock " + file + " held by pid " + strconv.Itoa(os.Getpid()) + ", podtail run)"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); len(b) != 0 {
		t.Errorf("lock file after Unlock holds %q, want nothing", b)
	}
	l2, err := positions.LockDir(dir, "podtail positions forget")
	if err != nil {
		t.Fatalf("LockDir after Unlock: %v", err)
	}
	if err := l2.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l2.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
}

// A holder that has not written its pid yet (or wrote something else) is
// still refused, without a pid.
func TestLockedErrorWithoutPID(t *testing.T) {
	dir := t.TempDir()
	l, err := positions.LockDir(dir, "podtail run")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if err := os.WriteFile(filepath.Join(dir, positions.LockName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = positions.LockDir(dir, "x")
	var le *positions.LockedError
	if !errors.As(err, &le) || le.PID != 0 || strings.Contains(err.Error(), "pid") {
		t.Errorf("got %v (%+v), want a LockedError without pid", err, le)
	}
}

// Load reads the positions file as Open would, and changes nothing: no
// directory or file is created, the file is not rewritten, and a missing
// file is os.ErrNotExist.
func TestLoadIsReadOnly(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	if _, err := positions.Load(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing data_dir: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load created %s", missing)
	}

	dir := t.TempDir()
	s := open(t, dir)
	want := positions.Position{Path: "/l/ctr.log", Inode: 7, Offset: 10, Delivered: 12, DeliveredStreams: map[string]int64{"stderr": 4},
		Last: map[string]int64{"stdout": 99}}
	s.Put("container:a", want)
	s.Put("container:j", positions.Position{Cursor: "s=1;i=2", DeliveredCursors: map[string]string{"stderr": "s=1;i=1"}})
	mustSync(t, s)
	file := filepath.Join(dir, positions.FileName)
	before, _ := os.ReadFile(file)
	st0, _ := os.Stat(file)

	got, err := positions.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := got["container:a"]
	if a.Path != want.Path || a.Inode != 7 || a.Offset != 10 || a.Delivered != 12 || a.DeliveredStreams["stderr"] != 4 ||
		a.Last["stdout"] != 99 || a.Updated.IsZero() {
		t.Errorf("container:a = %+v", a)
	}
	if j := got["container:j"]; j.Cursor != "s=1;i=2" || j.DeliveredCursors["stderr"] != "s=1;i=1" {
		t.Errorf("container:j = %+v", j)
	}
	after, _ := os.ReadFile(file)
	st1, _ := os.Stat(file)
	if !bytes.Equal(before, after) || !st0.ModTime().Equal(st1.ModTime()) || !os.SameFile(st0, st1) {
		t.Error("Load rewrote the positions file")
	}
	if _, err := os.Stat(filepath.Join(dir, positions.LockName)); err == nil {
		t.Error("Load created a lock file")
	}

	if err := os.WriteFile(file, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := positions.Load(dir); err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Load of a corrupt file: %v, want an error naming it", err)
	}
}
