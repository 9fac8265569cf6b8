package positions_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podtail/podtail/pkg/source/positions"
)

// The store under faults (issue 21): data_dir full, a damaged positions
// file, the clock stepped. The e2e tests (e2e/state_test.go) do the same
// through real Podman and Loki.

// noErrors is a logger that fails the test on anything logged at Error.
func noErrors(t *testing.T) *zap.Logger {
	core, logs := observer.New(zap.ErrorLevel)
	t.Cleanup(func() {
		for _, e := range logs.All() {
			t.Errorf("logged at error: %s %v", e.Message, e.ContextMap())
		}
	})
	return zap.New(core)
}

// full is a writer seam that fails as a full file system does while on.
type full struct{ on atomic.Bool }

func (f *full) wrap(w io.Writer) io.Writer { return fullWriter{f, w} }

type fullWriter struct {
	f *full
	w io.Writer
}

func (w fullWriter) Write(p []byte) (int, error) {
	if w.f.on.Load() {
		return 0, &os.PathError{Op: "write", Path: "positions", Err: syscall.ENOSPC}
	}
	return w.w.Write(p)
}

func openFull(t *testing.T, dir string, f *full) *positions.Store {
	t.Helper()
	s, err := positions.OpenWith(dir, f.wrap)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

// onDisk is what the positions file holds, failing the test unless it is
// a whole, valid file.
func onDisk(t *testing.T, dir string) map[string]positions.Position {
	t.Helper()
	ps, err := positions.Load(dir)
	if err != nil {
		t.Fatalf("the positions file: %v", err)
	}
	return ps
}

func metric(t *testing.T, s *positions.Store, name string) float64 {
	t.Helper()
	for _, c := range s.Collectors() {
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		if strings.Contains((<-ch).String(), `"`+name+`"`) {
			return testutil.ToFloat64(c)
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// With data_dir full, a sync fails (ENOSPC, which NoSpace recognises) and
// changes nothing on disk: the file still holds, whole, what the last
// successful sync wrote, and no temporary file is left to take space. The
// store keeps every position in memory, moving on, counts the failures,
// and says how long its changes have waited; the first sync once there is
// room writes them all.
func TestSyncOnFullDataDirKeepsFileAndMemory(t *testing.T) {
	dir := t.TempDir()
	f := &full{}
	s := openFull(t, dir, f)
	if got := s.Unsaved(); got != 0 {
		t.Errorf("unsaved %v after Open, want 0", got)
	}
	s.Put("container:a", positions.Position{Offset: 10})
	s.Put("container:b", positions.Position{Offset: 20})
	if s.Unsaved() <= 0 {
		t.Error("unsaved is 0 with changes not written")
	}
	mustSync(t, s)
	if got := s.Unsaved(); got != 0 {
		t.Errorf("unsaved %v after a sync, want 0", got)
	}
	before, _ := os.ReadFile(s.Path())

	f.on.Store(true)
	s.Put("container:a", positions.Position{Offset: 11})
	s.Delete("container:b")
	s.Put("container:c", positions.Position{Offset: 30})
	for range 3 {
		err := s.Sync()
		if err == nil || !positions.NoSpace(err) || !strings.Contains(err.Error(), s.Path()) {
			t.Fatalf("Sync on a full data_dir: %v; want ENOSPC naming %s", err, s.Path())
		}
	}
	if after, _ := os.ReadFile(s.Path()); !bytes.Equal(before, after) {
		t.Errorf("a failed sync changed the file:\n%s\nwas\n%s", after, before)
	}
	if ps := onDisk(t, dir); ps["container:a"].Offset != 10 || ps["container:b"].Offset != 20 || len(ps) != 2 {
		t.Errorf("file holds %+v, want a:10 b:20 as last written", ps)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("data_dir holds %d entries after failed syncs, want only the positions file", len(ents))
	}
	if p, _ := s.Get("container:a"); p.Offset != 11 {
		t.Errorf("in memory a = %d, want 11", p.Offset)
	}
	if _, ok := s.Get("container:b"); ok {
		t.Error("in memory b is back")
	}
	time.Sleep(20 * time.Millisecond)
	if u := s.Unsaved(); u < 20*time.Millisecond {
		t.Errorf("unsaved %v while writes fail, want at least 20ms", u)
	}
	if n := metric(t, s, "podtail_positions_write_errors_total"); n != 3 {
		t.Errorf("write errors = %v, want 3", n)
	}

	f.on.Store(false)
	mustSync(t, s)
	ps := onDisk(t, dir)
	if ps["container:a"].Offset != 11 || ps["container:c"].Offset != 30 || len(ps) != 2 {
		t.Errorf("after space came back the file holds %+v, want a:11 c:30", ps)
	}
	if got := s.Unsaved(); got != 0 {
		t.Errorf("unsaved %v once written, want 0", got)
	}
}

// Run on a full data_dir: positions go on moving in memory, writes are
// retried (no busy loop: one per retry), the failure is logged once at
// Error, and once space returns the file catches up within a retry and the
// recovery is logged once.
func TestRunOnFullDataDirLogsOnceAndRecovers(t *testing.T) {
	dir := t.TempDir()
	f := &full{}
	s := openFull(t, dir, f)
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	const retry = 20 * time.Millisecond
	go func() { defer close(done); s.Run(ctx, retry, zap.New(core)) }()
	defer func() { cancel(); <-done }()

	f.on.Store(true)
	for i := range 20 {
		s.Put("container:a", positions.Position{Offset: int64(i)})
		time.Sleep(10 * time.Millisecond)
	}
	errs := metric(t, s, "podtail_positions_write_errors_total")
	if errs < 3 || errs > 15 {
		t.Errorf("%v failed writes in 200ms with a %v retry: want a few, not a busy loop", errs, retry)
	}
	if n := logs.FilterLevelExact(zap.ErrorLevel).Len(); n != 1 {
		t.Errorf("%d errors logged for one failure going on, want 1: %v", n, logs.All())
	}
	if e := logs.FilterLevelExact(zap.ErrorLevel).All(); len(e) == 1 && e[0].ContextMap()["file"] != s.Path() {
		t.Errorf("the error does not name the file: %v", e[0].ContextMap())
	}

	f.on.Store(false)
	deadline := time.Now().Add(2 * time.Second)
	for onDisk(t, dir)["container:a"].Offset != 19 {
		if time.Now().After(deadline) {
			t.Fatalf("the file holds %+v 2s after space came back", onDisk(t, dir))
		}
		time.Sleep(5 * time.Millisecond)
	}
	deadline = time.Now().Add(2 * time.Second)
	for logs.FilterMessage("positions saved again").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("recovery not logged: %v", logs.All())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := logs.FilterMessage("positions saved again").Len(); n != 1 {
		t.Errorf("recovery logged %d times", n)
	}
	if got := s.Unsaved(); got != 0 {
		t.Errorf("unsaved %v after recovery", got)
	}
}

// Opening a data_dir that is full (no positions file, none can be
// written) does not stop podtail: the store works, not resumed, and Run
// writes the file once there is room.
func TestOpenOnFullDataDir(t *testing.T) {
	dir := t.TempDir()
	f := &full{}
	f.on.Store(true)
	s := openFull(t, dir, f)
	if s.Resumed() {
		t.Error("a store on an empty data_dir says Resumed")
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a positions file exists on a full data_dir: %v", err)
	}
	s.Put("container:a", positions.Position{Offset: 5})
	f.on.Store(false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx, 10*time.Millisecond, zap.NewNop()) }()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if ps, err := positions.Load(dir); err == nil && ps["container:a"].Offset == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("positions file not written 2s after space came back")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

// The outcomes of failed syncs are logged once, then at most once a
// minute while they go on, and their end once.
func TestFailuresLoggedOncePerMinute(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	t0 := time.Now()
	enospc := &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}
	n := positions.NoteFailures(log, "/d/positions.json", []time.Duration{0, time.Second, 30 * time.Second, 59 * time.Second,
		60 * time.Second, 61 * time.Second, 119 * time.Second, 121 * time.Second}, enospc, t0)
	if n != 8 {
		t.Fatalf("noted %d", n)
	}
	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message)
	}
	want := []string{"positions cannot be written", "positions still cannot be written", "positions still cannot be written", "positions saved again"}
	if len(msgs) != len(want) {
		t.Fatalf("logged %q, want %q", msgs, want)
	}
	for i := range want {
		if !strings.HasPrefix(msgs[i], want[i]) {
			t.Errorf("log %d: %q, want %q", i, msgs[i], want[i])
		}
	}
	last := logs.All()[3].ContextMap()
	if last["failed_writes"] != int64(8) {
		t.Errorf("recovery says %v failed writes, want 8", last["failed_writes"])
	}
	if lvl := logs.All()[0].Level; lvl != zapcore.ErrorLevel {
		t.Errorf("first failure logged at %v", lvl)
	}
}

// Damaged positions files, each as a crash, a disk or a hand could leave
// one. Open keeps the file aside (positions.json.corrupt-<time>, its bytes
// intact), replaces it with an empty, valid one, and starts resumed, so
// that the sources' lines are checked with Loki before being sent again;
// Recovered says what it did and names the file, and the next Open is a
// plain one.
func TestOpenSetsDamagedFileAside(t *testing.T) {
	whole := func() []byte {
		dir := t.TempDir()
		s := open(t, dir)
		for _, k := range []string{"container:a", "container:b", "file:/l#1:x"} {
			s.Put(k, positions.Position{Path: "/var/log/" + k, Offset: 1234, Last: map[string]int64{`{app="a"}`: 1}})
		}
		mustSync(t, s)
		b, err := os.ReadFile(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	for name, content := range map[string][]byte{
		"truncated mid-write": whole[:len(whole)/2],
		"cut at a key":        whole[:bytes.Index(whole, []byte(`"container:b"`))],
		"garbage":             {0x7f, 'E', 'L', 'F', 0, 0, 0xff, 0x13, '{', '"'},
		"zeros":               make([]byte, 4096), // a file system that lost the data, not the size
		"empty":               {},
		"an array":            []byte(`[1,2,3]`),
		"null":                []byte(`null`),
		"an empty object":     []byte(`{}`),
		"positions a list":    []byte(`{"version":1,"positions":[{"offset":1}]}`),
		"version a string":    []byte(`{"version":"1","positions":{}}`),
		"version 0":           []byte(`{"version":0,"positions":{}}`),
		"offset a string":     []byte(`{"version":1,"positions":{"container:a":{"offset":"12"}}}`),
		"negative offset":     []byte(`{"version":1,"positions":{"container:a":{"offset":-1}}}`),
		"trailing garbage":    append(bytes.Clone(whole), []byte("}}garbage")...),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, positions.FileName)
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s := open(t, dir)
			r := s.Recovered()
			if r == nil {
				t.Fatal("Open did not recover a damaged file")
			}
			if !s.Resumed() {
				t.Error("a store recovered from a damaged file is not Resumed: what an earlier podtail sent would be sent again")
			}
			if !strings.Contains(r.Cause.Error(), path) || !strings.Contains(r.Cause.Error(), "corrupt") {
				t.Errorf("cause %q does not name %s as corrupt", r.Cause, path)
			}
			if !strings.HasPrefix(r.Aside, path+".corrupt-") {
				t.Errorf("kept aside as %s", r.Aside)
			}
			if b, err := os.ReadFile(r.Aside); err != nil || !bytes.Equal(b, content) {
				t.Errorf("the file kept aside holds %q (%v), want the damaged bytes", b, err)
			}
			if ps := onDisk(t, dir); len(ps) != 0 {
				t.Errorf("the new positions file holds %v", ps)
			}
			if s.Len() != 0 {
				t.Errorf("the store holds %d positions", s.Len())
			}
			if n := metric(t, s, "podtail_positions_corrupt_files_total"); n != 1 {
				t.Errorf("corrupt files = %v, want 1", n)
			}
			s.Put("container:a", positions.Position{Offset: 1})
			mustSync(t, s)
			again := open(t, dir)
			if again.Recovered() != nil || !again.Resumed() {
				t.Errorf("the next Open: recovered %v, resumed %v; want a plain resumed one", again.Recovered(), again.Resumed())
			}
			if p, _ := again.Get("container:a"); p.Offset != 1 {
				t.Errorf("position after recovery lost: %+v", p)
			}
		})
	}
}

// Two recoveries in the same second keep both damaged files.
func TestOpenKeepsEachDamagedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, positions.FileName)
	var asides []string
	for _, c := range []string{"first", "second"} {
		if err := os.WriteFile(path, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		asides = append(asides, open(t, dir).Recovered().Aside)
	}
	if asides[0] == asides[1] {
		t.Fatalf("both kept as %s", asides[0])
	}
	for i, c := range []string{"first", "second"} {
		if b, _ := os.ReadFile(asides[i]); string(b) != c {
			t.Errorf("%s holds %q, want %q", asides[i], b, c)
		}
	}
}

// A damaged file on a full data_dir: it is kept aside all the same (a hard
// link takes no space), the store starts empty and resumed, and the new
// file is written once there is room. Meanwhile positions.json is still
// the damaged file, so a crash before that recovers again.
func TestOpenDamagedFileOnFullDataDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, positions.FileName)
	if err := os.WriteFile(path, []byte(`{"version":1,"posi`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &full{}
	f.on.Store(true)
	s := openFull(t, dir, f)
	if s.Recovered() == nil || !s.Resumed() {
		t.Fatalf("recovered %v, resumed %v", s.Recovered(), s.Resumed())
	}
	if _, err := positions.Load(dir); err == nil {
		t.Error("the positions file was replaced on a full data_dir")
	}
	f.on.Store(false)
	mustSync(t, s)
	if ps := onDisk(t, dir); len(ps) != 0 {
		t.Errorf("new file holds %v", ps)
	}
}

// A positions file of a newer version is not damage: Open refuses it,
// naming it, and leaves it as it is.
func TestOpenRefusesNewerVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, positions.FileName)
	content := []byte(`{"version":2,"positions":{"container:a":{"offset":5}}}`)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := positions.Open(dir)
	if err == nil {
		t.Fatalf("Open of a version 2 file succeeded: %+v", s)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not name %s as newer", err, path)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, content) {
		t.Error("the file was changed")
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Errorf("kept aside: %v", m)
	}
}

// Temporary files of writes a crash interrupted are removed by Open: on a
// full data_dir they hold the space the next write needs. One written in
// the last minute may be a write under way, and stays.
func TestOpenRemovesInterruptedWrites(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	left := filepath.Join(dir, "."+positions.FileName+"-123456.tmp")
	other := filepath.Join(dir, "notes.tmp")
	young := filepath.Join(dir, "."+positions.FileName+"-654321.tmp")
	old := time.Now().Add(-2 * time.Minute)
	for _, p := range []string{left, other, young} {
		if err := os.WriteFile(p, make([]byte, 1<<16), 0o600); err != nil {
			t.Fatal(err)
		}
		if p != young {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	open(t, dir)
	if _, err := os.Stat(young); err != nil {
		t.Errorf("a write under way (%s) was removed: %v", young, err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("interrupted write %s left: %v", left, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file not the store's was removed: %v", err)
	}
}

// The clock set back an hour and then right again (a forward step of an
// hour), or forward an hour, while podtail runs: Forget never forgets a
// position sooner than an hour after it last moved, while positions really
// older than that are still forgotten. Without accounting for the steps, a
// position updated while the clock was behind would look an hour old as
// soon as it was set right.
func TestForgetAcrossClockSteps(t *testing.T) {
	dir := t.TempDir()
	real := time.Now().UTC()
	writeFile(t, dir, map[string]positions.Position{
		"stale": {Offset: 1, Updated: real.Add(-3 * time.Hour)},
		"held":  {Offset: 2, Updated: real.Add(-50 * time.Minute)},
	})
	s := open(t, dir)
	none := func(string) bool { return false }
	present := func(keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := s.Get(k); !ok {
				t.Errorf("%s forgotten", k)
			}
		}
	}
	s.Put("before", positions.Position{Offset: 3})

	s.StepClock(-time.Hour) // date -s '-1 hour'
	s.Forget(time.Hour, none)
	present("held", "before")
	if _, ok := s.Get("stale"); ok {
		t.Error("a position 3h old survived a backward step")
	}
	s.Put("during", positions.Position{Offset: 4})
	if p, _ := s.Get("during"); time.Since(p.Updated) < 59*time.Minute {
		t.Errorf("Updated %v: not on the stepped clock", p.Updated)
	}

	s.StepClock(0) // set right: a forward step of an hour
	s.Forget(time.Hour, none)
	present("held", "before", "during")

	s.StepClock(time.Hour) // and an hour ahead
	s.Forget(time.Hour, none)
	present("held", "before", "during")
	mustSync(t, s)
	if ps := onDisk(t, dir); len(ps) != 3 {
		t.Errorf("file holds %d positions, want 3", len(ps))
	}
}

// Forgetting is late by at most the clock's steps, not off for good: with
// a step of 200ms, a position is forgotten once it is older than the age
// plus the step.
func TestForgetAfterClockStepStillForgets(t *testing.T) {
	s := open(t, t.TempDir())
	none := func(string) bool { return false }
	s.Put("k", positions.Position{Offset: 1})
	s.StepClock(-200 * time.Millisecond)
	s.Forget(50*time.Millisecond, none)
	s.StepClock(0)
	s.Forget(50*time.Millisecond, none)
	if _, ok := s.Get("k"); !ok {
		t.Fatal("forgotten before its age")
	}
	time.Sleep(300 * time.Millisecond)
	s.Forget(50*time.Millisecond, none)
	if _, ok := s.Get("k"); ok {
		t.Error("not forgotten 300ms later, past age + step")
	}
}
