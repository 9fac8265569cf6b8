package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/source/positions"
)

var (
	idA = "fcda6bdb0b2b" + strings.Repeat("a", 52) // k8s-file
	idB = "fcda6bdb9c1e" + strings.Repeat("b", 52) // k8s-file, sharing idA's first 8 characters
	idJ = "d846795b7dd4" + strings.Repeat("c", 52) // journald

	logsT1 = "/srv/namespace/t1/shop/workplace/logs"
	logsT2 = "/srv/namespace/t2/billing/workplace/logs"

	fpNew = "1024:" + strings.Repeat("1", 24)
	fpOld = "1024:" + strings.Repeat("2", 24)
	fpT2  = "88:" + strings.Repeat("3", 24)

	keyA, keyB, keyJ = "container:" + idA, "container:" + idB, "container:" + idJ
	keyNew, keyOld   = "file:" + logsT1 + "#" + fpNew, "file:" + logsT1 + "#" + fpOld
	keyT2            = "file:" + logsT2 + "#" + fpT2
)

const (
	cursorJ    = "s=0123abcd;i=1f;b=0a0b;m=10;t=5f3c;x=9e"
	deliveredJ = "s=0123abcd;i=22;b=0a0b;m=12;t=5f3e;x=9f"
	stderrJ    = "s=0123abcd;i=1c;b=0a0b;m=f;t=5f3b;x=a0"
)

// ctrLog is the k8s-file log of container id.
func ctrLog(id string) string {
	return "/var/lib/containers/storage/overlay-containers/" + id + "/userdata/ctr.log"
}

// newPositionsDir writes, through the positions package, a data_dir holding
// each kind of position: two k8s-file containers whose IDs share a prefix,
// a journald container, a log directory with two generations of one file
// (the same name: lumberjack's current file and the one renamed away), and
// another directory with one file.
func newPositionsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s, err := positions.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Put(keyA, positions.Position{Path: ctrLog(idA), Inode: 101, Offset: 5321, Delivered: 6000,
		DeliveredStreams: map[string]int64{"stderr": 5100}, Last: map[string]int64{"stdout": 1}})
	s.Put(keyB, positions.Position{Path: ctrLog(idB), Inode: 102, Offset: 77})
	s.Put(keyJ, positions.Position{Cursor: cursorJ, DeliveredCursor: deliveredJ, DeliveredCursors: map[string]string{"stderr": stderrJ}})
	s.Put(keyNew, positions.Position{Path: logsT1 + "/shop_v1.log", Inode: 201, Offset: 4096, Fingerprint: fpNew})
	s.Put(keyOld, positions.Position{Path: logsT1 + "/shop_v1.log", Inode: 200, Offset: 9000, Fingerprint: fpOld})
	s.Put(keyT2, positions.Position{Path: logsT2 + "/billing_v7.log", Inode: 301, Offset: 88, Fingerprint: fpT2})
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// podtail runs the command line args and returns what it printed.
func podtail(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return podtailCtx(context.Background(), args...)
}

func podtailCtx(ctx context.Context, args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func load(t *testing.T, dir string) map[string]positions.Position {
	t.Helper()
	ps, err := positions.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The table has one row per source, ordered by key, with its kind, age,
// inode and path, and what Loki acknowledged (and what was delivered past
// it); listing changes nothing in data_dir, and works while a podtail holds
// data_dir's lock.
func TestPositionsListTable(t *testing.T) {
	dir := newPositionsDir(t)
	file := filepath.Join(dir, positions.FileName)
	before := readFile(t, file)
	lock, err := positions.LockDir(dir, "podtail run") // as a running podtail does
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()

	out, err := podtail(t, "positions", "list", "--data_dir", dir)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("podtail positions list:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 7 || strings.Join(strings.Fields(lines[0]), " ") != "KEY KIND AGE INODE PATH ACKED" {
		t.Fatalf("want a header and 6 rows, got:\n%s", out)
	}
	want := [][]string{ // the fields of each row, AGE aside
		{keyJ, "journald", "-", "-", "cursor", cursorJ + ",", "delivered_cursor", deliveredJ + ",", "delivered_cursors", "stderr=" + stderrJ},
		{keyA, "k8s-file", "101", ctrLog(idA), "offset", "5321,", "delivered", "6000,", "delivered_streams", "stderr=5100"},
		{keyB, "k8s-file", "102", ctrLog(idB), "offset", "77"},
		{keyNew, "file", "201", logsT1 + "/shop_v1.log", "offset", "4096"},
		{keyOld, "file", "200", logsT1 + "/shop_v1.log", "offset", "9000"},
		{keyT2, "file", "301", logsT2 + "/billing_v7.log", "offset", "88"},
	}
	for i, w := range want {
		f := strings.Fields(lines[i+1])
		if len(f) < 3 {
			t.Fatalf("row %d: %q", i, lines[i+1])
		}
		if age := f[2]; age != "0s" && age != "1s" {
			t.Errorf("row %d: AGE %q, want 0s or 1s", i, age)
		}
		if got := append(f[:2:2], f[3:]...); !slices.Equal(got, w) {
			t.Errorf("row %d:\n got %q\nwant %q", i, got, w)
		}
	}

	// The age is now - Updated, to the second.
	var buf bytes.Buffer
	ps := load(t, dir)
	var latest time.Time
	for _, p := range ps {
		if p.Updated.After(latest) {
			latest = p.Updated
		}
	}
	if err := printPositions(&buf, file, ps, latest.Add(90*time.Second), false); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n")[1:] {
		if f := strings.Fields(l); f[2] != "1m30s" {
			t.Errorf("AGE %q 90 s after the last Put, want 1m30s: %q", f[2], l)
		}
	}

	if !bytes.Equal(before, readFile(t, file)) {
		t.Error("list changed the positions file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("data_dir holds %v, want positions.json and podtail.lock only", entries)
	}
}

// --json prints one object per source, with the fields that apply to its
// kind: an offset for files and k8s-file logs (and none for journald), the
// cursors for journald, the container's ID or the file's directory and
// fingerprint, updated and age_seconds.
func TestPositionsListJSON(t *testing.T) {
	dir := newPositionsDir(t)
	out, err := podtail(t, "positions", "list", "--json", "--data_dir", dir)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("podtail positions list --json:\n%s", out)
	rows := map[string]map[string]any{}
	var order []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		k, _ := r["key"].(string)
		rows[k] = r
		order = append(order, k)
	}
	if !slices.IsSorted(order) || len(order) != 6 {
		t.Errorf("keys %q, want the 6 sorted", order)
	}
	check := func(key string, want map[string]any, absent ...string) {
		t.Helper()
		r := rows[key]
		for f, v := range want {
			if !reflect.DeepEqual(r[f], v) {
				t.Errorf("%s: %s = %#v, want %#v", key, f, r[f], v)
			}
		}
		for _, f := range absent {
			if _, ok := r[f]; ok {
				t.Errorf("%s: has %s (%v)", key, f, r[f])
			}
		}
		if age, _ := r["age_seconds"].(float64); age < 0 || age > 60 {
			t.Errorf("%s: age_seconds %v", key, r["age_seconds"])
		}
		if u, _ := r["updated"].(string); u == "" {
			t.Errorf("%s: no updated", key)
		} else if _, err := time.Parse(time.RFC3339Nano, u); err != nil {
			t.Errorf("%s: updated %q: %v", key, u, err)
		}
	}
	check(keyA, map[string]any{"kind": "k8s-file", "container": idA, "path": ctrLog(idA), "inode": 101.0, "offset": 5321.0,
		"delivered": 6000.0, "delivered_streams": map[string]any{"stderr": 5100.0}}, "cursor", "dir", "last")
	check(keyJ, map[string]any{"kind": "journald", "container": idJ, "cursor": cursorJ, "delivered_cursor": deliveredJ,
		"delivered_cursors": map[string]any{"stderr": stderrJ}}, "offset", "path", "inode")
	check(keyNew, map[string]any{"kind": "file", "dir": logsT1, "fingerprint": fpNew, "path": logsT1 + "/shop_v1.log",
		"inode": 201.0, "offset": 4096.0}, "container", "cursor", "delivered")
}

// A data_dir without a positions file is named, and not created.
func TestPositionsListMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	out, err := podtail(t, "positions", "list", "--data_dir", dir)
	if err == nil || !strings.Contains(err.Error(), "no podtail has run with data_dir "+dir) {
		t.Errorf("list of a fresh data_dir: %v (%s)", err, out)
	}
	_, err = podtail(t, "positions", "forget", "--data_dir", dir, idA)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, positions.FileName)) {
		t.Errorf("forget in a fresh data_dir: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was created", dir)
	}

	empty := t.TempDir()
	if _, err := positions.Open(empty); err != nil { // a podtail that ran and stored nothing
		t.Fatal(err)
	}
	out, err = podtail(t, "positions", "list", "--data_dir", empty)
	if err != nil || out != "no positions stored in "+filepath.Join(empty, positions.FileName)+"\n" {
		t.Errorf("list of an empty store: %q, %v", out, err)
	}
}

// forget deletes exactly what its arguments match, says what each matched
// and what the next start does, and rewrites the file through the positions
// package (the rest of it unchanged, no temporary file left); an argument
// that matches nothing, or several sources where it names one, is refused
// and nothing is forgotten.
func TestPositionsForget(t *testing.T) {
	forget := func(t *testing.T, dir string, args ...string) (string, error) {
		t.Helper()
		return podtail(t, append([]string{"positions", "forget", "--data_dir", dir}, args...)...)
	}
	// gone checks that exactly keys were deleted, the rest unchanged.
	gone := func(t *testing.T, before, after map[string]positions.Position, keys ...string) {
		t.Helper()
		for k, p := range before {
			q, ok := after[k]
			switch {
			case slices.Contains(keys, k) && ok:
				t.Errorf("%s still there", k)
			case !slices.Contains(keys, k) && !ok:
				t.Errorf("%s was forgotten too", k)
			case ok && !reflect.DeepEqual(p, q):
				t.Errorf("%s changed:\n%+v\n%+v", k, p, q)
			}
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		gone []string
		says []string
	}{
		{"by key", []string{keyB}, []string{keyB}, []string{keyB + " (k8s-file " + ctrLog(idB) + ", offset 77, updated 0s ago): matched the key",
			"forgot 1 position in ", "next start: container output is read again from its first line (discovery.existing_from is start)"}},
		{"by container ID prefix", []string{"fcda6bdb0b2b"}, []string{keyA}, []string{`matched container ID prefix "fcda6bdb0b2b"`}},
		{"by container: prefix", []string{"container:d846"}, []string{keyJ}, []string{keyJ + " (journald, journal cursor, updated",
			`matched key prefix "container:d846"`}},
		{"by directory", []string{logsT1 + "/"}, []string{keyNew, keyOld}, []string{`matched log directory "` + logsT1 + `" (2 files)`,
			"forgot 2 positions", "next start: log files are read again from their first line"}},
		{"by file: directory", []string{"file:" + logsT2}, []string{keyT2}, []string{`matched log directory "` + logsT2 + `" (1 file)`}},
		{"by file key prefix", []string{"file:" + logsT1 + "#1024:1"}, []string{keyNew}, []string{`matched key prefix "file:` + logsT1 + `#1024:1"`}},
		{"by file path", []string{logsT2 + "/billing_v7.log"}, []string{keyT2}, []string{`matched path "` + logsT2 + `/billing_v7.log"`}},
		{"by container log path", []string{ctrLog(idA)}, []string{keyA}, []string{`matched path "` + ctrLog(idA) + `"`}},
		{"several, overlapping", []string{idJ, keyJ, logsT2}, []string{keyJ, keyT2}, []string{"forgot 2 positions", `matched container ID "` + idJ + `"`,
			"container output is read again", "log files are read again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newPositionsDir(t)
			before := load(t, dir)
			out, err := forget(t, dir, tc.args...)
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			t.Logf("podtail positions forget %s:\n%s", strings.Join(tc.args, " "), out)
			for _, s := range tc.says {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q", s)
				}
			}
			if n := strings.Count(out, ": matched "); n != len(tc.gone) {
				t.Errorf("%d matches printed, want %d", n, len(tc.gone))
			}
			gone(t, before, load(t, dir), tc.gone...)
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != positions.FileName && e.Name() != positions.LockName {
					t.Errorf("left in data_dir: %s", e.Name())
				}
			}
			// The file is still one the collector opens.
			s, err := positions.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Keys("")) != len(before)-len(tc.gone) {
				t.Errorf("Open sees %d positions", len(s.Keys("")))
			}
		})
	}

	for _, tc := range []struct {
		name string
		args []string
		says []string
	}{
		{"ambiguous container ID", []string{"fcda6bdb"}, []string{`container ID prefix "fcda6bdb" is ambiguous: it matches 2 positions (` + keyA + " inode 101 updated ", keyB, "give the whole key"}},
		{"ambiguous path", []string{logsT1 + "/shop_v1.log"}, []string{`path "` + logsT1 + `/shop_v1.log" is ambiguous: it matches 2 positions`, keyNew + " inode 201", keyOld + " inode 200"}},
		{"ambiguous fingerprint prefix", []string{"file:" + logsT1 + "#1024:"}, []string{"is ambiguous", keyNew, keyOld}},
		{"unmatched ID", []string{"deadbeef"}, []string{`no position matches container ID prefix "deadbeef"`}},
		{"unmatched container:", []string{"container:0000"}, []string{`no position matches key prefix "container:0000"`}},
		{"unmatched directory", []string{"/srv/namespace/nope"}, []string{`no position matches "/srv/namespace/nope": it is neither a log directory`}},
		{"unmatched file:", []string{"file:/srv/nope"}, []string{`no position matches "file:/srv/nope": no file of log directory /srv/nope has one`}},
		{"not a source", []string{"shop-1"}, []string{`no position matches "shop-1" (give a key`}},
		{"one good, one bad", []string{keyB, "deadbeef"}, []string{`"deadbeef"`}},
		{"two bad", []string{"fcda6bdb", "nope"}, []string{`"fcda6bdb" is ambiguous`, `no position matches "nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newPositionsDir(t)
			file := filepath.Join(dir, positions.FileName)
			before := readFile(t, file)
			out, err := forget(t, dir, tc.args...)
			if err == nil {
				t.Fatalf("no error; printed %s", out)
			}
			t.Logf("podtail positions forget %s: %v", strings.Join(tc.args, " "), err)
			for _, s := range append(tc.says, "nothing forgotten") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q", s)
				}
			}
			if out != "" {
				t.Errorf("printed %q", out)
			}
			if !bytes.Equal(before, readFile(t, file)) {
				t.Error("the positions file changed")
			}
		})
	}

	t.Run("existing_from end", func(t *testing.T) {
		t.Setenv("PODTAIL_DISCOVERY_EXISTING_FROM", "end")
		dir := newPositionsDir(t)
		out, err := forget(t, dir, idB)
		if err != nil || !strings.Contains(out, "next start: container output is skipped up to its end then, for a container already started when podtail starts (discovery.existing_from is end)") {
			t.Errorf("%v: %s", err, out)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		dir := newPositionsDir(t)
		file := filepath.Join(dir, positions.FileName)
		before := readFile(t, file)
		lock, err := positions.LockDir(dir, "podtail run")
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Unlock()
		out, err := forget(t, dir, "--dry-run", logsT1)
		if err != nil || !strings.Contains(out, "dry run: 2 positions would be forgotten in "+file) || strings.Count(out, "matched log directory") != 2 {
			t.Errorf("%v: %s", err, out)
		}
		if !bytes.Equal(before, readFile(t, file)) {
			t.Error("the positions file changed")
		}
	})
}

// While a podtail holds data_dir's lock, forget refuses, naming the data_dir,
// the lock file and the holder's pid, and changes nothing; once the lock is
// released it goes ahead.
func TestPositionsForgetRefusedWhileRunning(t *testing.T) {
	dir := newPositionsDir(t)
	file := filepath.Join(dir, positions.FileName)
	before := readFile(t, file)
	lock, err := positions.LockDir(dir, "podtail run")
	if err != nil {
		t.Fatal(err)
	}
	out, err := podtail(t, "positions", "forget", "--data_dir", dir, keyB)
	want := fmt.Sprintf("a podtail is running on %s (lock %s held by pid %d, podtail run); stop it first", dir, filepath.Join(dir, positions.LockName), os.Getpid())
	if err == nil || err.Error() != want {
		t.Fatalf("got %v (%s), want %q", err, out, want)
	}
	if !bytes.Equal(before, readFile(t, file)) {
		t.Error("the positions file changed")
	}
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	if out, err := podtail(t, "positions", "forget", "--data_dir", dir, keyB); err != nil {
		t.Fatalf("after the podtail stopped: %v: %s", err, out)
	}
	if _, ok := load(t, dir)[keyB]; ok {
		t.Error("not forgotten")
	}
}

// A removed container's output in the spool is read from there again: a
// hard link (the whole log) says so; a copy of only the undelivered part (a
// sparse file starting with a hole) cannot be read from its start, and is
// refused.
func TestPositionsForgetSpooled(t *testing.T) {
	dir := newPositionsDir(t)
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(spool, idA+".log")
	if err := os.WriteFile(whole, []byte("2026-01-01T00:00:00.000000000Z stdout F hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := podtail(t, "positions", "forget", "--data_dir", dir, idA)
	if err != nil || !strings.Contains(out, "removed container: its output is kept in "+whole+" and is read from there") {
		t.Errorf("%v: %s", err, out)
	}

	copied := filepath.Join(spool, idB+".log")
	f, err := os.Create(copied)
	if err != nil {
		t.Fatal(err)
	}
	const hole = 1 << 20
	_, err = f.WriteAt([]byte("2026-01-01T00:00:00.000000000Z stdout F undelivered\n"), hole)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if leadingHole(copied) == 0 {
		t.Skip("this filesystem does not report holes (SEEK_DATA)")
	}
	_, err = podtail(t, "positions", "forget", "--data_dir", dir, idB)
	if err == nil || !strings.Contains(err.Error(), "is a copy of only what was undelivered at its removal") ||
		!strings.Contains(err.Error(), "remove "+copied+" and "+filepath.Join(spool, idB+".json")) {
		t.Errorf("forget of a spooled copy: %v", err)
	}
	if _, ok := load(t, dir)[keyB]; !ok {
		t.Error("forgotten all the same")
	}
}

// `podtail run` holds data_dir's lock for its whole life: a second one on
// the same data_dir refuses to start, naming the data_dir and the first
// one's pid, and forget refuses; once the first has stopped, both can go
// ahead.
func TestRunLocksDataDir(t *testing.T) {
	dir := newPositionsDir(t)
	logs := t.TempDir()
	loki := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer loki.Close()
	cfg := filepath.Join(t.TempDir(), "podtail.yaml")
	yaml := fmt.Sprintf("podman:\n  enabled: false\nfiles:\n  static:\n    - glob: %s\n      tenant: t1\n"+
		"loki:\n  url: %s\nserver:\n  listen: 127.0.0.1:0\ndata_dir: %s\nlog:\n  level: error\n", logs, loki.URL, dir)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() { _, err := podtailCtx(ctx, "run", "--config", cfg); first <- err }()
	lockFile := filepath.Join(dir, positions.LockName)
	deadline := time.Now().Add(10 * time.Second)
	for string(readLock(lockFile)) != strconv.Itoa(os.Getpid())+" podtail run\n" {
		select {
		case err := <-first:
			t.Fatalf("podtail run ended: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("podtail run did not take data_dir's lock")
		}
		time.Sleep(10 * time.Millisecond)
	}

	start := time.Now()
	out, err := podtail(t, "run", "--config", cfg)
	want := fmt.Sprintf("a podtail is running on %s (lock %s held by pid %d, podtail run); not starting a second one on data_dir %s", dir, lockFile, os.Getpid(), dir)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("second podtail run: %v (%s), want an error starting %q", err, out, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the second run took %v to refuse", d)
	}
	t.Logf("second podtail run: %v", err)
	if _, err := podtail(t, "positions", "forget", "--data_dir", dir, keyB); err == nil || !strings.HasSuffix(err.Error(), "stop it first") {
		t.Errorf("forget under a running podtail: %v", err)
	}

	cancel()
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("podtail run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("podtail run did not stop")
	}
	if b := readLock(lockFile); len(b) != 0 {
		t.Errorf("the lock file names %q after run stopped", b)
	}
	if out, err := podtail(t, "positions", "forget", "--data_dir", dir, keyB); err != nil {
		t.Errorf("forget after run stopped: %v: %s", err, out)
	}
	l, err := positions.LockDir(dir, "podtail run")
	if err != nil {
		t.Fatalf("the lock after run stopped: %v", err)
	}
	l.Unlock()
}

func readLock(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}
