package file

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
)

// A quiet directory that inotify watches is looked at less often the
// longer it stays quiet, up to watchedPoll (the poll is a safety net
// there); a line read brings the poll back, and a directory without
// inotify polls at the poll interval however long it is quiet.
func TestIdlePollBacksOffWhileWatched(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	must(t, os.WriteFile(path, numbered(1, 3), 0o644))
	s := newSink()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil)
	st.d.watched = true
	poll := st.d.cfg.Poll
	if w := st.settle(); w != (wait{after: batchLook}) {
		t.Fatalf("just read: %+v, want one more look batchLook later", w)
	}
	if w := st.step(woken); w != (wait{after: poll}) {
		t.Fatalf("just idle: %+v, want the poll", w)
	}
	st.clock.Advance(2 * time.Second)
	if w := st.step(woken); w != (wait{after: 2 * time.Second}) {
		t.Fatalf("quiet for 2s: %+v, want a wait of 2s", w)
	}
	st.clock.Advance(10 * time.Minute)
	if w := st.step(woken); w != (wait{after: watchedPoll}) {
		t.Fatalf("quiet for ten minutes: %+v, want watchedPoll", w)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.Write(numbered(4, 4))
	must(t, err)
	must(t, f.Close())
	if w := st.settle(); w != (wait{after: batchLook}) {
		t.Fatalf("after a line: %+v, want a look batchLook later", w)
	}
	exactlyOnce(t, s, 1, 4)

	st.d.watched = false
	st.clock.Advance(time.Minute)
	if w := st.step(woken); w != (wait{after: poll}) {
		t.Fatalf("not watched, quiet for a minute: %+v, want the poll", w)
	}
}

// A multi-line entry waiting for its max_wait is completed by a step, not
// by any event: its directory keeps the poll however long it is quiet.
func TestIdlePollWhileJoining(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "app.log"), []byte("{\"msg\":\"a\"}\n  more of a\n"), 0o644))
	s := newSink()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil, func(c *Config) {
		c.Stages = func(string) (*pipeline.Pipeline, *pipeline.Multiline) {
			m, err := stage.NewMultilineFromSpec(map[string]any{"first_line": `^\{`, "max_wait": "30s"})
			if err != nil {
				t.Fatal(err)
			}
			return nil, m
		}
	})
	st.d.watched = true
	st.settle()
	st.clock.Advance(10 * time.Second)
	if w := st.step(woken); w != (wait{after: st.d.cfg.Poll}) {
		t.Fatalf("an entry waiting for max_wait: %+v, want the poll", w)
	}
	if s.total() != 0 {
		t.Fatalf("%d entries before max_wait, want none", s.total())
	}
	st.clock.Advance(30 * time.Second)
	st.settle()
	if s.total() != 1 {
		t.Fatalf("%d entries after max_wait, want the joined one", s.total())
	}
	st.clock.Advance(10 * time.Minute)
	if w := st.step(woken); w != (wait{after: watchedPoll}) {
		t.Fatalf("nothing pending, quiet for ten minutes: %+v, want watchedPoll", w)
	}
}

// A directory that cannot be listed (removed, say) is looked at every poll
// however long it has been quiet: it may come back, and its watch went with
// it; once listed again it is watched again.
func TestIdlePollWhileNotListed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "app.log"), numbered(1, 2), 0o644))
	s := newSink()
	watch, err := NewWatcher(zap.NewNop())
	if err != nil {
		t.Skipf("no inotify: %v", err)
	}
	defer watch.Close()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil, func(c *Config) { c.Watch = watch })
	st.settle()
	if !st.d.watched {
		t.Fatal("not watched once listed, with a shared watcher")
	}
	must(t, os.RemoveAll(dir))
	st.clock.Advance(time.Minute) // past reopenDirEvery: the directory is opened again
	if w := st.settle(); w != (wait{after: st.d.cfg.Poll}) {
		t.Fatalf("directory gone, quiet for a minute: %+v, want the poll", w)
	}
	if st.d.watched {
		t.Error("still taken for watched after the directory went")
	}
	exactlyOnce(t, s, 1, 2)

	must(t, os.MkdirAll(dir, 0o755))
	st.clock.Advance(time.Minute)
	st.settle()
	if !st.d.watched {
		t.Error("not watched again once the directory came back")
	}
}

// A write woken for in a watched directory is read without listing the
// directory (a name changing sets relist, and inotify says so); a listing
// comes with relist, or once listEveryWatched has passed.
func TestWriteReadWithoutListing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	must(t, os.WriteFile(path, numbered(1, 2), 0o644))
	s := newSink()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: s}, nil)
	st.d.watched = true
	st.settle()
	listed := st.d.ls.listedAt
	for i := 3; i <= 5; i++ {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		_, err = f.Write(numbered(i, i))
		must(t, err)
		must(t, f.Close())
		st.clock.Advance(100 * time.Millisecond)
		st.step(woken)
		if !st.d.ls.listedAt.Equal(listed) {
			t.Fatalf("write %d: the directory was listed for a write", i)
		}
	}
	exactlyOnce(t, s, 1, 5)
	st.step(woken | relist)
	if st.d.ls.listedAt.Equal(listed) {
		t.Error("not listed when a name changed (relist)")
	}
	listed = st.d.ls.listedAt
	st.clock.Advance(listEveryWatched)
	st.step(woken)
	if st.d.ls.listedAt.Equal(listed) {
		t.Error("not listed once listEveryWatched passed")
	}
}

// A write reported while the tailer's next look is due within batchGap is
// left to that look; one reported later wakes it, and a name changing
// always does.
func TestWriteLeftToALookDueSoon(t *testing.T) {
	dir := t.TempDir()
	st := newStepper(t, dir, nil, pipeline.Sink{Consumer: newSink()}, nil)
	st.d.w.take(reasons)
	st.d.w.due.Store(st.clock.Now().Add(batchLook).UnixNano())
	st.d.changed(false)
	if st.d.w.has(woken) {
		t.Fatalf("woken by a write with a look due in %v", batchLook)
	}
	st.d.changed(true)
	if !st.d.w.has(woken | relist) {
		t.Fatal("a name changing did not wake the tailer to list")
	}
	st.d.w.take(reasons)
	st.d.w.due.Store(st.clock.Now().Add(time.Second).UnixNano())
	st.d.changed(false)
	if !st.d.w.has(woken) {
		t.Fatal("a write with the next look a second away did not wake the tailer")
	}
}
