package file

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/podtail/podtail/pkg/pipeline"
)

// A hostile tenant's directory: symlinks to another tenant's file, to a
// host file and to a directory, a hard link to a file outside, a FIFO
// (nobody writes to it: opening it for reading would block), a unix socket
// and a directory, all named *.log, beside one honest file. Only the
// honest file is read; each refusal is counted once by reason and logged
// once, however many cycles pass; the reader never blocks.
func TestHostileDirectoryEntries(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "other_app_v1.log")
	if err := os.WriteFile(secret, []byte("OTHER TENANT SECRET\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink(secret, filepath.Join(dir, "to-other.log")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "to-host.log")))
	must(t, os.Symlink(outside, filepath.Join(dir, "to-dir.log")))
	must(t, os.Link(secret, filepath.Join(dir, "hard.log")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "pipe.log"), 0o644))
	sock, err := net.Listen("unix", filepath.Join(dir, "sock.log"))
	must(t, err)
	defer sock.Close()
	must(t, os.Mkdir(filepath.Join(dir, "sub.log"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "own.log"), []byte("own 1\nown 2\n"), 0o644))

	s := newSink()
	core, logs := observer.New(zap.WarnLevel)
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, zap.New(core))
	m := st.m
	for range 30 { // 30 cycles, each listing the directory
		st.settle()
	}
	s.mu.Lock()
	got := append([]string(nil), s.lines...)
	s.mu.Unlock()
	if len(got) != 2 || got[0] != "own 1" || got[1] != "own 2" {
		t.Fatalf("read %q; want only the honest file's 2 lines", got)
	}
	for reason, want := range map[string]float64{
		refusedSymlink: 3, refusedHardlink: 1, refusedFIFO: 1, refusedSocket: 1, refusedDirectory: 1,
	} {
		if got := testutil.ToFloat64(m.refused.WithLabelValues("t", reason)); got != want {
			t.Errorf("refused %s = %v, want %v (once per entry, not per cycle)", reason, got, want)
		}
	}
	if n := logs.FilterMessageSnippet("not read").Len(); n != 7 {
		t.Errorf("%d refusal warnings, want 7 (one per entry)", n)
	}

	// The other name of the hard link goes away, and the link is renamed:
	// the content was someone else's, so it stays refused.
	must(t, os.Remove(secret))
	must(t, os.Rename(filepath.Join(dir, "hard.log"), filepath.Join(dir, "renamed.log")))
	for range 10 {
		st.settle()
	}
	if s.count["OTHER TENANT SECRET"] != 0 {
		t.Fatal("a hard-linked file was read once its other name was gone")
	}
}

// The log directory reached through a symlink, as itself or as a parent,
// is not read: counted once as dir_symlink and logged once; a real path to
// the same directory is read.
func TestSymlinkedLogDirectory(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real", "workplace", "logs")
	must(t, os.MkdirAll(real, 0o755))
	must(t, os.WriteFile(filepath.Join(real, "a.log"), []byte("line\n"), 0o644))
	must(t, os.Symlink(real, filepath.Join(root, "linked-logs")))
	must(t, os.Symlink(filepath.Join(root, "real"), filepath.Join(root, "linked-parent")))

	for _, dir := range []string{filepath.Join(root, "linked-logs"), filepath.Join(root, "linked-parent", "workplace", "logs")} {
		s := newSink()
		core, logs := observer.New(zap.WarnLevel)
		st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, zap.New(core))
		m := st.m
		for range 30 {
			st.settle()
		}
		if n := s.total(); n != 0 {
			t.Errorf("%s: %d lines read through a symlink", dir, n)
		}
		if got := testutil.ToFloat64(m.refused.WithLabelValues("t", refusedDirSymlink)); got != 1 {
			t.Errorf("%s: dir_symlink refusals = %v, want 1", dir, got)
		}
		if n := logs.FilterMessageSnippet("symlink").Len(); n != 1 {
			t.Errorf("%s: %d warnings, want 1", dir, n)
		}
	}
	s := newSink()
	newStepper(t, real, nil, pipeline.Sink{Consumer: s}, nil).settle()
	if s.total() != 1 {
		t.Fatalf("%d lines through the real path, want 1", s.total())
	}
}

// openAt decides on the descriptor: whatever a name is when it is opened
// (a FIFO without a writer, a symlink, a hard link), it is refused without
// blocking; a regular file with one link opens.
func TestOpenAtRefuses(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(t, os.WriteFile(filepath.Join(outside, "f"), []byte("x\n"), 0o644))
	must(t, os.Symlink(filepath.Join(outside, "f"), filepath.Join(dir, "link")))
	must(t, os.Link(filepath.Join(outside, "f"), filepath.Join(dir, "hard")))
	must(t, os.WriteFile(filepath.Join(dir, "ok"), []byte("x\n"), 0o644))
	df, err := openDir(dir)
	must(t, err)
	defer df.Close()
	fd := int(df.Fd())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for name, want := range map[string]string{"fifo": refusedFIFO, "link": refusedSymlink, "hard": refusedHardlink} {
			_, _, err := openAt(fd, name, name)
			var re *refusedError
			if !errors.As(err, &re) || re.reason != want {
				t.Errorf("openAt(%s) = %v, want refused as %s", name, err, want)
			}
		}
		f, st, err := openAt(fd, "ok", "ok")
		if err != nil || st.nlink != 1 {
			t.Errorf("openAt(ok) = %v, nlink %d", err, st.nlink)
			return
		}
		f.Close()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("openAt blocked")
	}
}

// limits.line_too_long: drop. A line over the limit is not shipped at all,
// counted as a drop, and the position moves past it.
func TestLongLineDropped(t *testing.T) {
	dir := t.TempDir()
	lim, err := pipeline.NewLimits(pipeline.LimitsConfig{MaxLineBytes: 4096, DropLongLines: true}, nil, zap.NewNop())
	must(t, err)
	drops := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "d"}, []string{"tenant", "reason"})
	s := newSink()
	m := NewMetrics(prometheus.NewRegistry(), drops, nil)
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s, Limits: lim}, nil)
	st.d.metrics = m
	must(t, os.WriteFile(filepath.Join(dir, "a.log"), []byte("before\n"+strings.Repeat("z", 1<<20)+"\nafter\n"), 0o644))
	st.settle()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) != 2 || s.lines[0] != "before" || s.lines[1] != "after" {
		t.Fatalf("lines %d: %q…", len(s.lines), trunc(strings.Join(s.lines, "|")))
	}
	if got := testutil.ToFloat64(drops.WithLabelValues("t", pipeline.DropLineTooLong)); got != 1 {
		t.Errorf("line_too_long drops = %v, want 1", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// openDir (openat2, RESOLVE_NO_SYMLINKS) and the component walk it falls
// back on agree on every kind of path: a plain directory opens; a symlink
// as a middle or as the last component is refused as dir_symlink, naming
// that component; a missing component and a file are errors.
func TestOpenDirAgreesWithWalk(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "real", "logs"), 0o755))
	must(t, os.Symlink(filepath.Join(root, "real"), filepath.Join(root, "link")))
	must(t, os.Symlink(filepath.Join(root, "real", "logs"), filepath.Join(root, "real", "logslink")))
	must(t, os.WriteFile(filepath.Join(root, "real", "file"), nil, 0o644))
	for _, tc := range []struct {
		path, refused string // refused: the component named, "" when not a dir_symlink refusal
		ok            bool
	}{
		{path: "real/logs", ok: true},
		{path: "link/logs", refused: "link"},
		{path: "real/logslink", refused: "real/logslink"},
		{path: "real/missing"},
		{path: "real/file"},
	} {
		path := filepath.Join(root, tc.path)
		for name, open := range map[string]func(string) (*os.File, error){"openDir": openDir, "walkDir": walkDir} {
			f, err := open(path)
			if tc.ok {
				if err != nil {
					t.Errorf("%s(%s): %v", name, tc.path, err)
				} else {
					f.Close()
				}
				continue
			}
			if err == nil {
				f.Close()
				t.Errorf("%s(%s) opened", name, tc.path)
				continue
			}
			var re *refusedError
			switch {
			case tc.refused != "" && (!errors.As(err, &re) || re.reason != refusedDirSymlink || re.path != filepath.Join(root, tc.refused)):
				t.Errorf("%s(%s) = %v, want dir_symlink at %s", name, tc.path, err, tc.refused)
			case tc.refused == "" && errors.As(err, &re):
				t.Errorf("%s(%s) = %v, want a plain error", name, tc.path, err)
			}
		}
	}
	// The one-call path is the one taken here (Debian 12's kernel has it).
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS}
	fd, err := unix.Openat2(unix.AT_FDCWD, filepath.Join(root, "real", "logs"), &how)
	if errors.Is(err, unix.ENOSYS) {
		t.Skip("no openat2 on this kernel: only the walk was tested")
	}
	if err != nil {
		t.Fatalf("openat2: %v", err)
	}
	unix.Close(fd)
}
