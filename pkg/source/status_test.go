package source

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/podman"
)

// Status shows a container's output with its labels and log driver, the
// bytes read, acknowledged and not yet acknowledged, and how long the
// oldest unacknowledged line has waited; once Loki acknowledges, the lag
// is 0; when the container stops and its log is read, it is done.
func TestStatusOfContainerOutput(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"), cri(1, Stderr, "F", "bb"))
	tg := f.target(true, started1)
	tg.LogDriver = podman.LogDriverFile
	f.s.Sync([]discovery.Target{tg})
	got := f.sink.wait(2)
	size := f.lf.size()
	var st Status
	eventually(t, "the reader to have read the log", func() bool {
		ss := f.s.Status()
		if len(ss) == 1 {
			st = ss[0]
		}
		return st.Read == size
	})
	want := Status{Key: Key(testID), Kind: KindContainer, Container: "c", ID: testID, Path: f.lf.path, Tenant: "t", App: "a", Version: "v1",
		Stream: "stdout+stderr", LogDriver: "k8s-file", State: StateReading, Read: size, LagBytes: size}
	lagged := st.Lag
	st.Lag = 0
	if st != want {
		t.Errorf("before Loki acknowledged:\n got %+v\nwant %+v", st, want)
	}
	// The oldest line in flight is conmon's time of line a (base): long ago.
	if lagged < time.Since(base)-time.Minute {
		t.Errorf("lag %v, want the age of the oldest line in flight (%v)", lagged, time.Since(base))
	}

	ack(got...)
	eventually(t, "lag 0 once acknowledged", func() bool {
		st = f.s.Status()[0]
		return st.Acked == size && st.LagBytes == 0 && st.Lag == 0
	})

	f.lf.append(cri(2, Stdout, "F", "ccc"))
	f.s.Sync([]discovery.Target{f.target(false, started1)}) // stopped
	ack(f.sink.wait(3)[2])
	f.waitIdle()
	st = f.s.Status()[0]
	if st.State != StateDone || st.LagBytes != 0 || st.Since.IsZero() || st.Error != "" {
		t.Errorf("read to its end: %+v", st)
	}
	f.s.Sync(nil) // removed
	if ss := f.s.Status(); len(ss) != 0 {
		t.Errorf("a removed container still shown: %+v", ss)
	}
}

// A directory's files each get a row, with the file's own labels (the
// version in its name), its bytes read and acknowledged and its lag.
func TestStatusOfFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "u_shop_v2.log")
	if err := os.WriteFile(path, []byte("one\ntwo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, snk := filesScheduler(t, nil, &discovery.FileRules{Include: []string{"*.log"}, NameRegex: regexp.MustCompile(labels.DefaultNameRegex)})
	s.Sync([]discovery.Target{{ID: testID, Name: "shop-1", Tenant: "t", App: "shop", Version: "v1", Running: true,
		LogDirs: []discovery.LogDir{{Path: dir}}}})
	got := snk.wait(2)
	var st Status
	eventually(t, "the file's row", func() bool {
		ss := s.Status()
		if len(ss) == 1 {
			st = ss[0]
		}
		return st.Read == 8
	})
	if st.Kind != KindFile || st.Path != path || st.Tenant != "t" || st.App != "shop" || st.Version != "v2" || st.Stream != "file" ||
		st.Container != "shop-1" || st.State != StateReading || st.LagBytes != 8 || st.Lag <= 0 || st.LogDriver != "" {
		t.Errorf("before Loki acknowledged: %+v", st)
	}
	ack(got...)
	eventually(t, "lag 0 once acknowledged", func() bool {
		st = s.Status()[0]
		return st.Acked == 8 && st.LagBytes == 0 && st.Lag == 0
	})
}

// A tenant outside limits.tenants: its sources say why nothing of theirs
// reaches Loki.
func TestStatusOfTenantNotAllowed(t *testing.T) {
	f := newSchedFixture(t, "start", nil, cri(0, Stdout, "F", "a"))
	lim, err := pipeline.NewLimits(pipeline.LimitsConfig{Tenants: []string{"other"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.s.out.Limits = lim
	f.s.Sync([]discovery.Target{f.target(true, started1)})
	eventually(t, "the row", func() bool { return len(f.s.Status()) == 1 })
	if e := f.s.Status()[0].Error; e != "tenant t is not in limits.tenants: its lines are dropped (tenant_not_allowed)" {
		t.Errorf("error %q", e)
	}
}

func TestLagAt(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		bytes         int64
		oldest, mtime time.Time
		want          time.Duration
	}{
		{0, now.Add(-time.Hour), now, 0},
		{10, now.Add(-3 * time.Second), now.Add(-time.Second), 3 * time.Second},
		{10, time.Time{}, now.Add(-2 * time.Second), 2 * time.Second}, // nothing in flight: since the last write
		{10, now.Add(time.Second), time.Time{}, 0},                    // a line from the future
	} {
		if got := lagAt(c.bytes, c.oldest, c.mtime, now); got != c.want {
			t.Errorf("lagAt(%d, %v, %v) = %v, want %v", c.bytes, now.Sub(c.oldest), now.Sub(c.mtime), got, c.want)
		}
	}
}
