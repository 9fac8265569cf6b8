package file

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// logrotateNames reads app.log and logrotate's copies of it: app.log.1,
// app.log.2.gz, app.log-20261206 (dateext).
func logrotateNames(c *Config) {
	re := regexp.MustCompile(`^app\.log(\.[0-9]+|-[0-9]{8})?(\.gz)?$`)
	c.Match = re.MatchString
}

// readingApp is a tailer that has read app.log's lines 1..1000, and the
// app has written on to line upTo since.
func readingApp(t *testing.T, upTo int) (*stepper, *sink, string) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	must(t, os.WriteFile(path, numbered(1, 1000), 0o644))
	s := newSink()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil, logrotateNames)
	st.settle()
	appendTo(t, path, numbered(1001, upTo))
	return st, s, path
}

// gzipFile compresses src into dst and removes src, as logrotate's
// compress does.
func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	must(t, err)
	f, err := os.Create(dst)
	must(t, err)
	zw := gzip.NewWriter(f)
	_, err = zw.Write(b)
	must(t, err)
	must(t, zw.Close())
	must(t, f.Close())
	must(t, os.Remove(src))
}

// podtail down while logrotate rotates (create mode, compress): the lines
// written after the stored position are read from app.log.1.gz, resuming at
// that position, and the new app.log from its start. (With only *.log.gz
// backups recognised, those 500 lines were lost: 2,000 of 2,500 arrived.)
func TestLogrotateCompressedWhileDown(t *testing.T) {
	dir, posDir := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "app.log")
	must(t, os.WriteFile(path, numbered(1, 2000), 0o644))
	store, err := positions.Open(posDir)
	must(t, err)
	s := newSink()
	newStepper(t, dir, store, pipeline.Sink{Consumer: s}, nil, logrotateNames).settle()
	exactlyOnce(t, s, 1, 2000)
	must(t, store.Sync())

	// Down: the app writes on, logrotate renames, compresses, creates anew.
	appendTo(t, path, numbered(2001, 2500))
	must(t, os.Rename(path, path+".1"))
	gzipFile(t, path+".1", path+".1.gz")
	must(t, os.WriteFile(path, numbered(2501, 3000), 0o644))

	store2, err := positions.Open(posDir)
	must(t, err)
	s2 := newSink()
	st := newStepper(t, dir, store2, pipeline.Sink{Consumer: s2}, nil, logrotateNames)
	st.settle()
	exactlyOnce(t, s2, 2001, 3000)
}

// copytruncate: lines written after the last read and before the copy are
// in the copy only (app.log.1): it is the same file by its head, so reading
// resumes there at the offset read, and the truncated app.log is read anew.
func TestLogrotateCopytruncateKeepsTheTail(t *testing.T) {
	st, s, path := readingApp(t, 1200) // 1001..1200 not read before the copy
	b, err := os.ReadFile(path)
	must(t, err)
	must(t, os.WriteFile(path+".1", b, 0o644))
	must(t, os.Truncate(path, 0))
	appendTo(t, path, numbered(1201, 1300))
	st.settle()
	st.settle()
	exactlyOnce(t, s, 1, 1300)
}

// dateext: app.log renamed to app.log-20261206 and created anew while the
// tailer runs: every line once.
func TestLogrotateDateext(t *testing.T) {
	st, s, path := readingApp(t, 1500)
	must(t, os.Rename(path, path+"-20261206"))
	must(t, os.WriteFile(path, numbered(1501, 2000), 0o644))
	st.settle()
	exactlyOnce(t, s, 1, 2000)
}
