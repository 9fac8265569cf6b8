package source

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/journal/journaltest"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/source/positions"
)

// The journal these tests read is pkg/journal's fixture written by a real
// systemd-journald (252, Debian's defaults: compact, keyed hash, zstd) from
// entries shaped like conmon's (pkg/journal/testdata/make-fixtures.sh):
// containers "a", "b" and "c", with IDs fixtureID(name).
const journalFixture = "../journal/testdata/compact-keyed-zstd.journal.zst"

// conmonFixture holds container "d"'s output as conmon writes it: full
// lines with their newline, and a stdout and a stderr line split into
// partial entries that interleave:
//
//	stdout "one\n"; stdout "two-a " (partial); stderr "err-1\n";
//	stderr "err-2a " (partial); stdout "two-b " (partial); stdout "two-c\n";
//	stderr "err-2b\n"; stdout "three\n"
const conmonFixture = "../journal/testdata/conmon.journal.zst"

// fixtureID is the container ID the fixture's generator gives name.
func fixtureID(name string) string {
	sum := sha256.Sum256([]byte("podtail-fixture-" + name))
	return hex.EncodeToString(sum[:])
}

// journalDir is a journal root holding the fixture, as a machine-id
// directory of it.
func journalDir(t *testing.T) string {
	t.Helper()
	return journalDirOf(t, journalFixture)
}

func journalDirOf(t *testing.T, fixture string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "0123456789abcdef0123456789abcdef")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := journaltest.Unpack(t, fixture, dir)
	if err := os.Rename(path, filepath.Join(dir, "system.journal")); err != nil {
		t.Fatal(err)
	}
	return root
}

func journalTarget(name string) discovery.Target {
	return discovery.Target{ID: fixtureID(name), Name: name, Tenant: "t", App: "a", Version: "v1", Running: true, LogDriver: "journald"}
}

func newJournalReader(t *testing.T, root, name string, store *positions.Store, next pipeline.Consumer) *JournalOutput {
	o := NewJournalOutput(journalTarget(name), Journal{Dirs: []string{root}}, store, Pipes{}, pipeline.Sink{Consumer: next}, false,
		NewMetrics(prometheus.NewRegistry()), zap.NewNop())
	o.settle = drainSettle // a fixture journal gets no late entries
	return o
}

// A container's entries, and only its, in order: stdout and stderr told
// apart by PRIORITY (6 stdout, 3 stderr; 4, a "<4>" prefix under conmon 2.2,
// stdout), the partial entries conmon split a line into joined into one,
// entry times from the journal.
func TestJournalOutputReadsItsContainersEntries(t *testing.T) {
	root := journalDir(t)
	for name, want := range map[string][]string{
		"b": {"stdout hello from b", "stdout partial start of a long line", "stdout grüße ✓ UTF-8"},
		"c": {"stderr from c to stderr"},
	} {
		s := newSink(t)
		o := newJournalReader(t, root, name, openStore(t, t.TempDir()), s.consumer())
		o.SetDraining(true)
		if err := runJournalToEnd(t, o); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range s.entries() {
			stream := Stdout
			if e.Labels == labelsOf[Stderr] {
				stream = Stderr
			}
			got = append(got, stream+" "+e.Line)
			if e.Time.IsZero() || e.Time.Year() < 2026 {
				t.Errorf("%s: time %v, want the journal's", e.Line, e.Time)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("container %s: %q, want %q", name, got, want)
		}
	}
}

// Acknowledged entries are stored as a journal cursor; a reader started
// again on the same positions goes on after it: nothing lost, nothing twice.
func TestJournalOutputResumesAfterAcknowledgedCursor(t *testing.T) {
	root := journalDir(t)
	dir := t.TempDir()
	store := openStore(t, dir)
	s := drainJournal(t, root, "a", store)
	all := lines(s.entries())
	if len(all) < 6 {
		t.Fatalf("container a: %d lines: %q", len(all), all)
	}
	ack(s.entries()[:4]...)
	p, ok := store.Get(Key(fixtureID("a")))
	if !ok || p.Cursor == "" {
		t.Fatalf("no cursor stored after the acknowledgement: %+v", p)
	}

	s2 := drainJournal(t, root, "a", store)
	if got := lines(s2.entries()); !slices.Equal(got, all[4:]) {
		t.Errorf("after the restart: %q, want the unacknowledged %q", got, all[4:])
	}
}

// While a line split into partial entries is not delivered, the stored
// cursor stays before its first part, so a restart joins it again whole.
func TestJournalOutputKeepsCursorBeforeUndeliveredPartialLine(t *testing.T) {
	root := journalDir(t)
	store := openStore(t, t.TempDir())
	s := drainJournal(t, root, "b", store)
	es := s.entries()
	ack(es[0]) // "hello from b"; the joined line is not acknowledged

	s2 := drainJournal(t, root, "b", store)
	if got, want := lines(s2.entries()), []string{"partial start of a long line", "grüße ✓ UTF-8"}; !slices.Equal(got, want) {
		t.Errorf("after the restart: %q, want %q", got, want)
	}
}

// conmon's interleaved partial entries become whole lines on their streams,
// without conmon's newlines, sent in the order their last parts came.
func TestJournalOutputJoinsInterleavedPartialLines(t *testing.T) {
	s := newSink(t)
	o := newJournalReader(t, journalDirOf(t, conmonFixture), "d", openStore(t, t.TempDir()), s.consumer())
	o.SetDraining(true)
	if err := runJournalToEnd(t, o); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range s.entries() {
		got = append(got, map[string]string{labelsOf[Stdout]: "out ", labelsOf[Stderr]: "err "}[e.Labels]+e.Line)
	}
	want := []string{"out one", "err err-1", "out two-a two-b two-c", "err err-2a err-2b", "out three"}
	if !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// A line acknowledged while another, split into partial entries, was still
// being joined around it: the stored cursor stays before that line's first
// part, so a restart joins it whole again, and the acknowledged line read
// again on the way is not sent twice (delivered_cursor).
func TestJournalOutputResumesBeforeAnInterleavedPartialLine(t *testing.T) {
	root := journalDirOf(t, conmonFixture)
	store := openStore(t, t.TempDir())
	s := drainJournal(t, root, "d", store)
	ack(s.entries()[:2]...) // "one" and "err-1": "two-a …" began before err-1 and is not delivered
	if p, _ := store.Get(Key(fixtureID("d"))); p.DeliveredCursor == "" || p.DeliveredCursor == p.Cursor {
		t.Errorf("position %+v: want the cursor before two-a and delivered_cursor at err-1", p)
	}

	s2 := drainJournal(t, root, "d", store)
	if got, want := lines(s2.entries()), []string{"two-a two-b two-c", "err-2a err-2b", "three"}; !slices.Equal(got, want) {
		t.Errorf("after the restart: %q, want %q", got, want)
	}
}

// drainJournal reads container name's output from the journal at root to
// its end, as a reader of a stopped container does, into a new sink.
func drainJournal(t *testing.T, root, name string, store *positions.Store) *sink {
	t.Helper()
	s := newSink(t)
	o := newJournalReader(t, root, name, store, s.consumer())
	o.SetDraining(true)
	if err := runJournalToEnd(t, o); err != nil {
		t.Fatal(err)
	}
	return s
}

// runJournalToEnd runs a draining reader until it returns.
func runJournalToEnd(t *testing.T, o *JournalOutput) error {
	t.Helper()
	o.settle = drainSettle // a fixture journal gets no late entries
	return runReader(t, o).wait()
}

// discovery.existing_from "end": a container already running when podtail
// first sees it is read from what it writes next; the journal's entries of
// it so far are passed over, and the position stored at the last of them.
func TestJournalOutputExistingFromEnd(t *testing.T) {
	store := openStore(t, t.TempDir())
	s := newSink(t)
	o := NewJournalOutput(journalTarget("d"), Journal{Dirs: []string{journalDirOf(t, conmonFixture)}}, store, Pipes{}, pipeline.Sink{Consumer: s.consumer()}, true,
		NewMetrics(prometheus.NewRegistry()), zap.NewNop())
	o.SetDraining(true)
	if err := runJournalToEnd(t, o); err != nil {
		t.Fatal(err)
	}
	if got := lines(s.entries()); len(got) != 0 {
		t.Errorf("from the end: sent %q, want nothing", got)
	}
	if p, ok := store.Get(Key(fixtureID("d"))); !ok || p.Cursor == "" {
		t.Errorf("no cursor stored at the end: %+v", p)
	}
}
