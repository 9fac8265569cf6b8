package positions

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockName is the lock file inside data_dir. Whoever writes the positions
// file holds an exclusive flock(2) on it: `podtail run` for its whole life,
// `podtail positions forget` while it rewrites the file. Two collectors on
// one positions file would each overwrite the other's positions (and send
// every line twice); a forget under a running podtail would be undone by
// its next sync. The file stays after use (removing a lock file races with
// whoever opens it next); the lock is the kernel's and dies with the
// process, so a podtail killed with SIGKILL leaves nothing to clean up.
const LockName = "podtail.lock"

// Lock is a held data_dir lock.
type Lock struct {
	f *os.File
}

// LockedError says that another process holds the data_dir lock.
type LockedError struct {
	Dir  string // data_dir
	File string // the lock file
	// PID and Holder are what the holder wrote in the lock file (0 and ""
	// when it had not written them yet, or wrote something else).
	PID    int
	Holder string
}

func (e *LockedError) Error() string {
	by := ""
	switch {
	case e.PID > 0 && e.Holder != "":
		by = fmt.Sprintf(" by pid %d, %s", e.PID, e.Holder)
	case e.PID > 0:
		by = fmt.Sprintf(" by pid %d", e.PID)
	}
	return fmt.Sprintf("a podtail is running on %s (lock %s held%s)", e.Dir, e.File, by)
}

// LockDir takes the data_dir lock of dir (creating dir if needed) without
// waiting: when another process holds it, the error is a *LockedError
// naming the holder's pid and what it is (holder, as written by it, e.g.
// "podtail run"). The lock is held until Unlock, or until the process ends.
func LockDir(dir, holder string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data_dir %s: lock: %w", dir, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		b, _ := os.ReadFile(path)
		f.Close()
		le := &LockedError{Dir: dir, File: path}
		le.PID, le.Holder = parseHolder(string(b))
		return nil, le
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data_dir %s: lock %s: %w", dir, path, err)
	}
	// Who holds it, for the one refused. Written after locking: a reader
	// that finds the file locked but empty (between the two) names no pid.
	// Only that: on a full data_dir the lock is held all the same, and the
	// one refused names no pid.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+holder+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// parseHolder reads "<pid> <holder>\n".
func parseHolder(s string) (int, string) {
	s = strings.TrimSpace(s)
	pid, holder, _ := strings.Cut(s, " ")
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return 0, ""
	}
	return n, strings.TrimSpace(holder)
}

// Unlock releases the lock. The pid is cleared first, so that the file
// names no process once none holds it.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
