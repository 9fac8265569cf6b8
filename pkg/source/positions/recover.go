package positions

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// What Open does with a damaged positions file, and why.
//
// A positions file podtail wrote is whole: writes replace it atomically. A
// damaged one comes from elsewhere: a disk or file system that lost data
// (a power cut on a file system mounted without ordered data), a copy or
// restore cut short, a hand edit. Refusing to start would stop every log
// until someone moves the file; starting from nothing would send every log
// again. Open does neither: it keeps the file aside for people to look at,
// starts with no positions, and says Resumed, as after a restart. Every
// source is then read again from its start (containers already running
// follow discovery.existing_from), its lines marked as possibly sent
// before, and the sink asks Loki which of them it holds and sends only the
// others (pkg/loki/replay.go): nothing is lost, and nothing is sent twice
// but lines without a time of their own (README, known limits).

// CorruptError says that the positions file is not one: not JSON, cut
// short, empty, or JSON of another shape.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("positions %s is corrupt: %v", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Recovery is what Open did with a damaged positions file.
type Recovery struct {
	// Cause is what is wrong with the file.
	Cause *CorruptError
	// Aside is where the damaged file is kept
	// (positions.json.corrupt-<time>).
	Aside string
}

// Recovered returns what Open did with a damaged positions file, or nil
// when it found the file whole (or none).
func (s *Store) Recovered() *Recovery { return s.recovery }

// setAside keeps the damaged file under a name of its own and starts the
// store empty, as resumed. positions.json is there throughout (linked aside,
// then replaced by an empty file), so a crash in between still finds a
// file and starts resumed.
func (s *Store) setAside(ce *CorruptError) error {
	stamp := time.Now().UTC().Format("20060102T150405Z")
	var aside string
	for i := 0; ; i++ {
		aside = s.path + ".corrupt-" + stamp
		if i > 0 {
			aside += "-" + strconv.Itoa(i)
		}
		err := os.Link(s.path, aside)
		if err == nil {
			break
		}
		if errors.Is(err, os.ErrExist) && i < 100 {
			continue
		}
		// No hard links here: move it, and write the empty file at once.
		if err := os.Rename(s.path, aside); err != nil {
			return fmt.Errorf("%w; keeping it aside as %s failed: %v", ce, aside, err)
		}
		break
	}
	s.recovery = &Recovery{Cause: ce, Aside: aside}
	s.resumed = true
	s.metrics.corrupt.Inc()
	if err := s.writeEmpty(); err != nil {
		return fmt.Errorf("%w; kept aside as %s, but a new one cannot be written: %v", ce, aside, err)
	}
	return nil
}

// removeTemps removes the temporary files of writes that a crash (SIGKILL,
// power loss) interrupted: on a full data_dir they hold space a write
// needs. Only those a minute old: a write takes milliseconds, so one that
// young may be another store's on the same directory (a test's; podtail's
// are kept apart by the data_dir lock).
func (s *Store) removeTemps() {
	dir, base := filepath.Dir(s.path), "."+filepath.Base(s.path)+"-"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, base) || !strings.HasSuffix(n, ".tmp") || !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}
