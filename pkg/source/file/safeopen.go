package file

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A tenant controls what is in its log directory, so everything the tailer
// opens there is opened relative to a descriptor of the directory, with
// O_NOFOLLOW, and checked on the descriptor (fstat), never on the path: a
// name swapped for a symlink between the listing and the open cannot lead
// out of the directory. The directory itself is opened with no symlink
// followed in any component of its path (see openDir).

// Why an entry, or the directory, is not read: the reason label of
// podtail_file_refused_total.
const (
	refusedSymlink   = "symlink"
	refusedHardlink  = "hardlink" // a regular file with more than one link
	refusedFIFO      = "fifo"
	refusedSocket    = "socket"
	refusedDevice    = "device"
	refusedDirectory = "directory"
	refusedOther     = "other"
	// refusedDirSymlink: a component of the log directory's own path is a
	// symlink.
	refusedDirSymlink = "dir_symlink"
)

// fileStat is what the tailer needs of a stat.
type fileStat struct {
	ino   uint64
	nlink uint64
	mode  fs.FileMode
	size  int64
	mtime time.Time
}

func statOf(st *unix.Stat_t) fileStat {
	mode := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	default:
		mode |= fs.ModeIrregular
	}
	return fileStat{
		ino: st.Ino, nlink: uint64(st.Nlink), mode: mode, size: st.Size,
		mtime: time.Unix(st.Mtim.Unix()),
	}
}

func (s fileStat) stamp() stamp { return stamp{size: s.size, mtime: s.mtime} }

// refusal says why a file is not read, or "" when it may be: only regular
// files with one link are. A symlink could point at another tenant's file or
// at /etc/shadow; a hard link could be another tenant's file on the same
// filesystem (linked by someone who could reach it); a FIFO would block a
// reader and a device must not be opened at all.
func refusal(s fileStat) string {
	switch m := s.mode; {
	case m&fs.ModeSymlink != 0:
		return refusedSymlink
	case m&fs.ModeNamedPipe != 0:
		return refusedFIFO
	case m&fs.ModeSocket != 0:
		return refusedSocket
	case m&fs.ModeDevice != 0:
		return refusedDevice
	case m.IsDir():
		return refusedDirectory
	case !m.IsRegular():
		return refusedOther
	case s.nlink > 1:
		return refusedHardlink
	}
	return ""
}

// refusedError is a file or directory not read for reason.
type refusedError struct {
	path   string
	reason string
	st     fileStat
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("%s: not read (%s)", e.path, e.reason)
}

// openDir opens dir for listing without following a symlink in any
// component of its path (an error wrapping *refusedError names the first
// that is one).
//
// openat2(2) with RESOLVE_NO_SYMLINKS does that in one system call, the
// kernel refusing a symlink anywhere on the path: walking the path one
// component at a time (an openat and a close each) was 4 % of podtail's
// CPU with 500 directories. When it fails (a symlink, a missing component,
// or a kernel older than 5.6 or a seccomp filter without openat2), the
// walk runs, and names what is wrong.
func openDir(dir string) (*os.File, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS,
	}
	if fd, err := unix.Openat2(unix.AT_FDCWD, dir, &how); err == nil {
		return os.NewFile(uintptr(fd), dir), nil
	}
	return walkDir(dir)
}

// walkDir is openDir one component at a time from /; dir is absolute.
func walkDir(dir string) (*os.File, error) {
	var parts []string
	if rest := strings.TrimPrefix(dir, "/"); rest != "" {
		parts = strings.Split(rest, "/")
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	if len(parts) == 0 {
		parts = []string{"."}
	}
	cur := "/"
	for i, p := range parts {
		flags := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		}
		next := filepath.Join(cur, p)
		nfd, err := openatRetry(fd, p, flags)
		if err != nil {
			var st unix.Stat_t
			if unix.Fstatat(fd, p, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = &refusedError{path: next, reason: refusedDirSymlink, st: statOf(&st)}
			} else {
				err = &fs.PathError{Op: "open", Path: next, Err: err}
			}
			unix.Close(fd)
			return nil, err
		}
		unix.Close(fd)
		fd, cur = nfd, next
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// lstatAt stats name in the directory dirfd without following it.
func lstatAt(dirfd int, name string) (fileStat, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileStat{}, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	return statOf(&st), nil
}

// openAt opens name in the directory dirfd for reading, only if it is a
// regular file with one link, deciding on the opened descriptor. O_NONBLOCK
// keeps a FIFO put in the name's place from blocking the open; O_NOFOLLOW
// refuses a symlink put there. A refusal is an error wrapping
// *refusedError; path only names the file in errors.
func openAt(dirfd int, name, path string) (*os.File, fileStat, error) {
	fd, err := openatRetry(dirfd, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fileStat{}, &refusedError{path: path, reason: refusedSymlink}
		}
		return nil, fileStat{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fileStat{}, &fs.PathError{Op: "fstat", Path: path, Err: err}
	}
	s := statOf(&st)
	if reason := refusal(s); reason != "" {
		unix.Close(fd)
		return nil, s, &refusedError{path: path, reason: reason, st: s}
	}
	// A regular file: reads never block, and the runtime's poller does not
	// take regular files, so the descriptor goes back to blocking mode.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, s, &fs.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), s, nil
}

func openatRetry(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// fstat stats an open file.
func fstat(f *os.File) (fileStat, error) {
	var st unix.Stat_t
	sc, err := f.SyscallConn()
	if err != nil {
		return fileStat{}, err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return fileStat{}, err
	}
	if serr != nil {
		return fileStat{}, &fs.PathError{Op: "fstat", Path: f.Name(), Err: serr}
	}
	return statOf(&st), nil
}
