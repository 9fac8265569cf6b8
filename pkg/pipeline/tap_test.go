package pipeline

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/podtail/podtail/pkg/labels"
)

// tapStream is a Stream of tenant/app into an acknowledging sink, through
// p, tapped by tap.
func tapStream(tap *Tap, tenant, app string, p *Pipeline, lim *Limits) *Stream {
	return NewStream(StreamConfig{
		Tenant:   tenant,
		Labels:   map[string]string{labels.Tenant: tenant, labels.Application: app, labels.Version: "v1"},
		Metadata: []Label{{Name: "container", Value: app + "-1"}},
	}, p, Sink{Consumer: &entries{}, Limits: lim, Tap: tap})
}

// taken returns what l holds now, without waiting.
func taken(l *TapListener) []*TapEntry {
	var out []*TapEntry
	for e := l.Ready(); e != nil; e = l.Ready() {
		out = append(out, e)
	}
	return out
}

func tapLines(es []*TapEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Line)
	}
	return out
}

// A listener sees the lines of the tenant and application it asked for,
// and nothing of the others; one that asked for neither sees all.
func TestTapFiltersByTenantAndApp(t *testing.T) {
	tap := NewTap()
	streams := []*Stream{
		tapStream(tap, "acme", "shop", nil, nil),
		tapStream(tap, "acme", "cart", nil, nil),
		tapStream(tap, "other", "shop", nil, nil),
	}
	filters := map[string]TapFilter{
		"acme/shop": {Tenant: "acme", App: "shop", Point: TapShipped},
		"acme":      {Tenant: "acme", Point: TapShipped},
		"shop":      {App: "shop", Point: TapBefore},
		"all":       {Point: TapShipped},
		"nobody":    {Tenant: "acme", App: "nope", Point: TapShipped},
	}
	ls := map[string]*TapListener{}
	for name, f := range filters {
		ls[name] = tap.Listen(f)
		defer ls[name].Close()
	}
	for i, s := range streams {
		if err := sendFlush(s, t0, fmt.Sprintf("%s/%s line", s.tenant, []string{"shop", "cart", "shop"}[i]), 1, "stream", "stdout"); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{
		"acme/shop": {"acme/shop line"},
		"acme":      {"acme/shop line", "acme/cart line"},
		"shop":      {"acme/shop line", "other/shop line"},
		"all":       {"acme/shop line", "acme/cart line", "other/shop line"},
		"nobody":    nil,
	}
	for name, l := range ls {
		if got := tapLines(taken(l)); !slices.Equal(got, want[name]) {
			t.Errorf("%s: got %q, want %q", name, got, want[name])
		}
	}
}

// Before the stages a listener sees the line as its source passed it;
// after stage N what the first N stages made of it (after the last when
// the pipeline has fewer); as shipped the Loki stream's labels, the time
// made unique and the source's metadata. An entry a stage drops reaches
// the listeners past that stage with the reason.
func TestTapPoints(t *testing.T) {
	upper := StageFunc(func(r *Record) (bool, string) {
		r.Line = strings.ToUpper(r.Line)
		return true, ""
	})
	dropNoise := StageFunc(func(r *Record) (bool, string) {
		if strings.Contains(r.Line, "NOISE") {
			return false, "noise"
		}
		return true, ""
	})
	caller := StageFunc(func(r *Record) (bool, string) {
		r.SetMetadata("caller", "a.go:1")
		return true, ""
	})
	tap := NewTap()
	s := tapStream(tap, "acme", "shop", New(jsonLevel, upper, dropNoise, caller), nil)
	points := []TapPoint{TapBefore, 1, 2, 3, 4, 9, TapShipped}
	ls := make([]*TapListener, len(points))
	for i, p := range points {
		ls[i] = tap.Listen(TapFilter{App: "shop", Point: p})
		defer ls[i].Close()
	}
	for i, line := range []string{`{"level":"info","msg":"a"}`, `{"level":"info","msg":"b"}`, `{"level":"info","msg":"noise"}`} {
		if err := sendFlush(s, t0, line, int64(i+1), "stream", "stdout"); err != nil {
			t.Fatal(err)
		}
	}
	got := map[TapPoint][]*TapEntry{}
	for i, l := range ls {
		got[points[i]] = taken(l)
	}
	for p, es := range got {
		if len(es) != 3 {
			t.Fatalf("%v: %d entries, want 3: %q", p, len(es), tapLines(es))
		}
	}
	before := got[TapBefore][0]
	if before.Line != `{"level":"info","msg":"a"}` || !before.Time.Equal(t0) || before.Labels[LabelLogLevel] != "" ||
		before.Labels["stream"] != "stdout" || before.Labels["application"] != "shop" || before.Metadata != nil || before.Where() != "before the stages" {
		t.Errorf("before the stages: %+v", before)
	}
	one := got[1][0]
	if one.Line != before.Line || one.Labels[LabelLogLevel] != "info" || one.Where() != "after stage 1 of 4" {
		t.Errorf("after stage 1: %+v (%s)", one, one.Where())
	}
	if two := got[2][0]; two.Line != `{"LEVEL":"INFO","MSG":"A"}` {
		t.Errorf("after stage 2: %q", two.Line)
	}
	for _, p := range []TapPoint{4, 9} { // 9: past the last stage
		if e := got[p][0]; e.Point != 4 || !slices.Equal(e.Metadata, []Label{{"caller", "a.go:1"}}) {
			t.Errorf("after stage %d: %+v, want after stage 4 with the caller", p, e)
		}
	}
	shipped := got[TapShipped]
	if e := shipped[1]; e.Line != `{"LEVEL":"INFO","MSG":"B"}` || !e.Time.Equal(t0.Add(1)) || e.Dropped != "" ||
		!slices.Equal(e.Metadata, []Label{{"caller", "a.go:1"}, {"container", "shop-1"}}) ||
		!maps.Equal(e.Labels, map[string]string{"tenant": "acme", "application": "shop", "version": "v1", "stream": "stdout", LabelLogLevel: "info"}) {
		t.Errorf("shipped: %+v (the time is moved 1 ns past the first entry's)", e)
	}
	// The third is dropped by stage 3: before stage 3 it passes, from there
	// on it is shown dropped, where it was.
	for _, p := range []TapPoint{TapBefore, 1, 2} {
		if e := got[p][2]; e.Dropped != "" {
			t.Errorf("%v: %+v, not dropped yet", p, e)
		}
	}
	for _, p := range []TapPoint{3, 4, 9, TapShipped} {
		if e := got[p][2]; e.Dropped != "noise" || e.Point != 3 || e.Line != `{"LEVEL":"INFO","MSG":"NOISE"}` {
			t.Errorf("%v: %+v, want dropped at stage 3 for noise", p, e)
		}
	}
}

// A guard's drop reaches the listeners past it, with its reason: the line
// length and the tenant allow-list before the stages, the stream bound
// after them.
func TestTapShowsGuardDrops(t *testing.T) {
	lim := mustLimits(t, LimitsConfig{MaxLineBytes: 64, DropLongLines: true, MaxStreamsPerTenant: 1})
	tap := NewTap()
	shipped := tap.Listen(TapFilter{Point: TapShipped})
	defer shipped.Close()
	s := tapStream(tap, "acme", "shop", New(jsonLevel), lim)
	for i, line := range []string{`{"level":"a","msg":"this line is longer than sixty-four bytes, so it is dropped"}`, `short`, `{"a"}`} {
		if err := sendFlush(s, t0, line, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	// A second label set would be a second stream: refused.
	lim2 := mustLimits(t, LimitsConfig{MaxStreamsPerTenant: 1})
	s2 := tapStream(tap, "acme", "shop", New(jsonLevel), lim2)
	for i, line := range []string{`{"level":"a"}`, `{"level":"b"}`} {
		if err := sendFlush(s2, t0, line, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, e := range taken(shipped) {
		got = append(got, e.Line+" "+e.Dropped+" "+e.Where())
	}
	want := []string{
		`{"level":"a","msg":"this line is longer than sixty-four bytes, so it is dropped"} line_too_long before the stages`,
		`short  shipped`,
		`{"a"}  shipped`,
		`{"level":"a"}  shipped`,
		`{"level":"b"} stream_limit shipped`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A listener that does not take what it is given gets its buffer's worth,
// and the rest is counted as missed; Send never waits for it. Its buffer
// is bounded in bytes too.
func TestTapSlowListenerMissesAndNeverBlocks(t *testing.T) {
	tap := NewTap()
	l := tap.Listen(TapFilter{Point: TapShipped})
	defer l.Close()
	s := tapStream(tap, "acme", "shop", nil, nil)
	const n = 3 * tapBufferEntries
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			if err := sendFlush(s, t0, fmt.Sprint("line ", i), int64(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Send waited for a listener that does not read")
	}
	got := taken(l)
	if _, slow := l.Missed(); len(got) != tapBufferEntries || slow != n-tapBufferEntries {
		t.Errorf("took %d, missed %d; want %d and %d", len(got), slow, tapBufferEntries, n-tapBufferEntries)
	}
	if got[0].Line != "line 1" || got[len(got)-1].Line != fmt.Sprint("line ", tapBufferEntries) {
		t.Errorf("took %q .. %q, want the first %d", got[0].Line, got[len(got)-1].Line, tapBufferEntries)
	}
	// Room again once it reads: the next lines arrive.
	if err := sendFlush(s, t0, "after", n+1); err != nil {
		t.Fatal(err)
	}
	if got := tapLines(taken(l)); !slices.Equal(got, []string{"after"}) {
		t.Errorf("after reading: %q", got)
	}

	// Long lines: the byte bound holds before the entry bound.
	big := strings.Repeat("x", 256<<10)
	for i := 0; i < 100; i++ {
		if err := sendFlush(s, t0, big, int64(n+2+i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(taken(l)); got > tapBufferBytes/(256<<10)+1 || got < tapBufferBytes/(256<<10)-1 {
		t.Errorf("took %d lines of 256 KiB, want about %d (%d bytes)", got, tapBufferBytes/(256<<10), tapBufferBytes)
	}
}

// A listener with a rate takes at most that many entries per second and
// counts the rest as over its rate.
func TestTapRate(t *testing.T) {
	tap := NewTap()
	l := tap.Listen(TapFilter{Point: TapShipped, Rate: 5})
	defer l.Close()
	s := tapStream(tap, "acme", "shop", nil, nil)
	start := time.Now()
	for i := 1; i <= 200; i++ {
		if err := sendFlush(s, t0, fmt.Sprint("line ", i), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if time.Since(start) > 900*time.Millisecond {
		t.Skip("too slow a machine to stay within one rate window")
	}
	got := taken(l)
	over, slow := l.Missed()
	if len(got) != 5 || over != 195 || slow != 0 {
		t.Errorf("took %d, %d over the rate, %d slow; want 5, 195, 0", len(got), over, slow)
	}
}

// Once its last listener has gone, the tap is idle again (one load per
// Send), and a closed listener is offered nothing, even by a Stream that
// matched it before.
func TestTapCloseStopsOffering(t *testing.T) {
	tap := NewTap()
	s := tapStream(tap, "acme", "shop", nil, nil)
	l := tap.Listen(TapFilter{Point: TapShipped})
	if err := sendFlush(s, t0, "one", 1); err != nil {
		t.Fatal(err)
	}
	w := s.tapW
	l.Close()
	l.Close() // twice is harmless
	if tap.gen.Load() != 0 || tap.Listeners() != 0 {
		t.Fatalf("after the last listener closed: generation %d, %d listeners", tap.gen.Load(), tap.Listeners())
	}
	if err := sendFlush(s, t0, "two", 2); err != nil {
		t.Fatal(err)
	}
	// The Stream still holding its old match offers nothing to l.
	w.ship(s, &Entry{Line: "three"}, &Record{}, nil)
	if got := taken(l); len(got) != 0 {
		t.Errorf("a closed listener got %q", tapLines(got))
	}
}

// Streams on their own goroutines while listeners come and go: each
// listener gets only its application's lines, in each stream's order, and
// nothing waits (run with -race).
func TestTapConcurrentStreamsAndListeners(t *testing.T) {
	tap := NewTap()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, app := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := tapStream(tap, "acme", app, New(jsonLevel), nil)
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := sendFlush(s, t0, fmt.Sprintf("%s %d", app, i), int64(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for round := 0; round < 50; round++ {
		l := tap.Listen(TapFilter{App: "b", Point: TapPoint(round % 3), Rate: 100 * (round % 2)})
		time.Sleep(time.Millisecond)
		last := 0
		for _, e := range taken(l) {
			var n int
			if _, err := fmt.Sscanf(e.Line, "b %d", &n); err != nil || n <= last {
				t.Fatalf("round %d: %q after b %d", round, e.Line, last)
			}
			last = n
		}
		l.Close()
	}
	close(stop)
	wg.Wait()
}

// The tap's copy does not borrow the source's buffer (BorrowedLines).
func TestTapCopiesBorrowedLines(t *testing.T) {
	tap := NewTap()
	l := tap.Listen(TapFilter{Point: TapBefore})
	defer l.Close()
	shipped := tap.Listen(TapFilter{Point: TapShipped})
	defer shipped.Close()
	s := NewStream(StreamConfig{Tenant: "acme", Labels: map[string]string{labels.Tenant: "acme"}, BorrowedLines: true},
		New(jsonLevel), Sink{Consumer: &entries{}, Tap: tap})
	buf := []byte(`{"level":"info"}`)
	if err := sendFlush(s, t0, unsafe.String(&buf[0], len(buf)), 1); err != nil {
		t.Fatal(err)
	}
	copy(buf, strings.Repeat("#", len(buf)))
	for _, e := range append(taken(l), taken(shipped)...) {
		if e.Line != `{"level":"info"}` {
			t.Errorf("%s: line %q after the buffer was reused", e.Where(), e.Line)
		}
		if e.Point == TapShipped && e.Labels[LabelLogLevel] != "info" {
			t.Errorf("shipped: log_level %q after the buffer was reused", e.Labels[LabelLogLevel])
		}
	}
}

// While nobody listens, a tapped Send allocates nothing more than an
// untapped one (nothing at all, in this setting).
func TestTapIdleSendAllocatesNothing(t *testing.T) {
	tap := NewTap()
	s := benchStream(Sink{Consumer: ackingSink{}, Tap: tap})
	other := tap.Listen(TapFilter{App: "other", Point: TapShipped})
	defer other.Close()
	ctx := context.Background()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		_ = s.Send(ctx, t0.Add(time.Duration(i)), benchLine, int64(i), "stream", "file")
		if i%64 == 0 {
			_ = s.Flush(ctx)
		}
	})
	if allocs > 0 {
		t.Errorf("%.2f allocations per Send while the only listener listens to another app", allocs)
	}
}

// Send's cost with a tap: nobody listening, a listener of another
// application, and one of this stream's (taking at once, at most 1,000 a
// second, or not at all), after a stage or as shipped.
func BenchmarkStreamSendTap(b *testing.B) {
	drain := func(l *TapListener) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, ok := l.Next(ctx, time.Second); !ok {
					return
				}
			}
		}()
		return func() { cancel(); <-done }
	}
	for _, c := range []struct {
		name   string
		filter *TapFilter
		drain  bool
	}{
		{"idle", nil, false},
		{"other-app", &TapFilter{App: "other", Point: TapShipped}, false},
		{"shipped", &TapFilter{App: "shop", Point: TapShipped}, true},
		{"shipped-rate1000", &TapFilter{App: "shop", Point: TapShipped, Rate: 1000}, true},
		{"shipped-slow", &TapFilter{App: "shop", Point: TapShipped}, false},
		{"stage1", &TapFilter{App: "shop", Point: 1}, true},
		{"before", &TapFilter{App: "shop", Point: TapBefore}, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			tap := NewTap()
			if c.filter != nil {
				l := tap.Listen(*c.filter)
				defer l.Close()
				if c.drain {
					defer drain(l)()
				}
			}
			benchSend(b, benchStream(Sink{Consumer: ackingSink{}, Tap: tap}))
		})
	}
}
