package loki

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podtail/podtail/pkg/pipeline"
)

func replayed(e pipeline.Entry) pipeline.Entry {
	e.Replay = true
	return e
}

// After a restart, entries the podtail before had sent (its push stored,
// its positions not yet saved) are not sent again; replayed entries Loki
// does not hold are, and once a stream's check finds its last replayed
// entry missing, that stream is not checked again. Entries not marked, or
// stamped after the client started, are never checked.
func TestReplayedEntriesLokiHoldsAreNotSentAgain(t *testing.T) {
	f := newFakeLoki(t, nil)
	one, two := `{a="1"}`, `{a="2"}`
	// What the killed podtail got stored: the first three of stream one.
	f.pushes["t"] = []push.PushRequest{{Streams: []push.Stream{{Labels: one, Entries: []push.Entry{
		{Timestamp: time.Unix(0, base), Line: "l1"},
		{Timestamp: time.Unix(0, base+1), Line: "l2"},
		{Timestamp: time.Unix(0, base+2), Line: "l3"},
	}}}}}
	c, _ := startClient(t, testConfig(f.srv.URL))
	ack := newAcker(t)
	for i, line := range []string{"l1", "l2", "l3", "l4"} {
		mustConsume(t, c, replayed(entry("t", one, base+int64(i), line, ack, int64(i+1))))
	}
	mustConsume(t, c, replayed(entry("t", two, base, "m1", ack, 5)))
	mustConsume(t, c, entry("t", two, base+1, "m2", ack, 6)) // read past what was there at start
	flush(t, c)
	if got := ack.calls(); !slices.Equal(got, []int64{6}) {
		t.Errorf("acks = %v, want every entry acknowledged, stored or sent: [6]", got)
	}
	got := flatten(f.recorded("t")...)
	slices.Sort(got)
	want := []string{
		`{a="1"}|1700000000123456789|l1`, `{a="1"}|1700000000123456790|l2`, `{a="1"}|1700000000123456791|l3`,
		`{a="1"}|1700000000123456792|l4`, `{a="2"}|1700000000123456789|m1`, `{a="2"}|1700000000123456790|m2`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("Loki holds\n%v\nwant each entry once:\n%v", got, want)
	}
	for outcome, n := range map[string]float64{"stored": 3, "sent": 2, "unverified": 0} {
		if got := testutil.ToFloat64(c.m.replayed.WithLabelValues("t", outcome)); got != n {
			t.Errorf("replayed_entries{%s} = %v, want %v", outcome, got, n)
		}
	}
	if got := testutil.ToFloat64(c.m.entriesSent.WithLabelValues("t")); got != 3 {
		t.Errorf("entries_sent = %v, want 3 (the stored ones were not sent)", got)
	}
	asked := f.queryCount()
	if asked != 2 {
		t.Errorf("Loki was asked %d times, want 2 (one per stream)", asked)
	}

	// Both streams are now known clean, and a line stamped after the start
	// cannot have been sent before: no more questions.
	ack2 := newAcker(t)
	c2, _ := startClient(t, testConfig(f.srv.URL))
	mustConsume(t, c2, replayed(entry("t", `{a="3"}`, time.Now().Add(time.Hour).UnixNano(), "later", ack2, 1)))
	flush(t, c2)
	asked = f.queryCount()
	if asked != 2 {
		t.Errorf("an entry stamped after the start was checked (%d queries)", asked)
	}
}

// A stream whose replayed entries Loki holds in full is checked again on
// its next batch: the stored part may go on past one batch.
func TestReplayCheckGoesOnWhileEverythingWasStored(t *testing.T) {
	f := newFakeLoki(t, nil)
	s := `{a="1"}`
	var stored []push.Entry
	for i := range 4 {
		stored = append(stored, push.Entry{Timestamp: time.Unix(0, base+int64(i)), Line: "x"})
	}
	f.pushes["t"] = []push.PushRequest{{Streams: []push.Stream{{Labels: s, Entries: stored}}}}
	cfg := testConfig(f.srv.URL)
	cfg.BatchSize = 2 // two entries of one byte per batch
	c, _ := startClient(t, cfg)
	ack := newAcker(t)
	for i := range 6 {
		mustConsume(t, c, replayed(entry("t", s, base+int64(i), "x", ack, int64(i+1))))
	}
	flush(t, c)
	if n := len(flatten(f.recorded("t")...)); n != 6 {
		t.Errorf("Loki holds %d entries, want the 6 once each", n)
	}
	if got := testutil.ToFloat64(c.m.replayed.WithLabelValues("t", "stored")); got != 4 {
		t.Errorf("replayed_entries{stored} = %v, want 4", got)
	}
}

// When Loki's query API does not answer (a push-only gateway), replayed
// entries are sent unchecked, counted, and checks stop.
func TestReplayUncheckedWithoutQueryAPI(t *testing.T) {
	f := newFakeLoki(t, nil)
	f.queryHook = func(w http.ResponseWriter) bool {
		http.Error(w, "no such endpoint", http.StatusNotFound)
		return false
	}
	c, _ := startClient(t, testConfig(f.srv.URL))
	ack := newAcker(t)
	mustConsume(t, c, replayed(entry("t", `{a="1"}`, base, "l1", ack, 1)))
	mustConsume(t, c, replayed(entry("t", `{a="2"}`, base, "m1", ack, 2)))
	flush(t, c)
	if n := len(flatten(f.recorded("t")...)); n != 2 {
		t.Errorf("Loki holds %d entries, want 2", n)
	}
	if got := testutil.ToFloat64(c.m.replayed.WithLabelValues("t", "unverified")); got != 2 {
		t.Errorf("replayed_entries{unverified} = %v, want 2", got)
	}
	asked := f.queryCount()
	if asked != 1 {
		t.Errorf("query API asked %d times after it failed, want 1", asked)
	}
}
