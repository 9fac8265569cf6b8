package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/labels"
)

// entries collects what a Stream hands on and acknowledges it at once.
type entries struct {
	mu  sync.Mutex
	got []Entry
}

func (c *entries) Consume(_ context.Context, es []Entry) (int, error) {
	c.mu.Lock()
	c.got = append(c.got, es...)
	c.mu.Unlock()
	for _, e := range es {
		e.Ack.Ack(e.Pos)
	}
	return len(es), nil
}

// sendFlush is a source's read of one line: Send, then Flush.
func sendFlush(s *Stream, t time.Time, line string, pos int64, ls ...string) error {
	if err := s.Send(context.Background(), t, line, pos, ls...); err != nil {
		return err
	}
	return s.Flush(context.Background())
}

// guardedStream is a Stream of tenant "real" with the seed's trusted labels
// behind limits (nil: none), its drops counted in drops.
func guardedStream(t *testing.T, lim *Limits, p *Pipeline, acked *int64) (*Stream, *entries, *prometheus.CounterVec) {
	t.Helper()
	out := &entries{}
	drops := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "d"}, []string{"tenant", "reason"})
	s := NewStream(StreamConfig{
		Tenant: "real",
		Labels: map[string]string{labels.Tenant: "real", labels.Application: "shop", labels.Version: "v1"},
		Drops:  drops,
		OnAck: func(pos int64, _ map[string]int64) {
			if acked != nil {
				*acked = pos
			}
		},
	}, p, Sink{Consumer: out, Limits: lim})
	return s, out, drops
}

func mustLimits(t *testing.T, cfg LimitsConfig) *Limits {
	t.Helper()
	l, err := NewLimits(cfg, prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// jsonLevel stands in for the json_auto stage of pkg/pipeline/stage
// (which imports this package): the label log_level from a line
// {"level":"..."}.
var jsonLevel = StageFunc(func(r *Record) (bool, string) {
	if _, v, ok := strings.Cut(r.Line, `"level":"`); ok {
		r.Labels[LabelLogLevel], _, _ = strings.Cut(v, `"`)
	}
	return true, ""
})

// Without a source label for application or version (a container with no
// app label), a stage still cannot supply one.
func TestStageCannotFillMissingTrustedLabel(t *testing.T) {
	out := &entries{}
	s := NewStream(StreamConfig{Tenant: "real", Labels: map[string]string{labels.Tenant: "real"}}, New(StageFunc(func(r *Record) (bool, string) {
		r.Labels["application"], r.Labels["version"], r.Labels["tenant"] = "evil", "v9", "other"
		return true, ""
	})), Sink{Consumer: out})
	if err := sendFlush(s, t0, "x", 1); err != nil {
		t.Fatal(err)
	}
	if got := out.got[0].Labels; got != `{tenant="real"}` {
		t.Errorf("labels %s, want only the source's tenant", got)
	}
}

// limits.max_line_bytes with line_too_long truncate: cut with the marker to
// exactly the limit, never inside a character, counted; drop: not shipped,
// counted, and the position moves past it.
func TestLineLimit(t *testing.T) {
	lim := mustLimits(t, LimitsConfig{MaxLineBytes: 1024})
	s, out, _ := guardedStream(t, lim, nil, nil)
	long := "é" + strings.Repeat("ü", 2000)
	if err := sendFlush(s, t0, long, 1); err != nil {
		t.Fatal(err)
	}
	if err := sendFlush(s, t0, "short", 2); err != nil {
		t.Fatal(err)
	}
	l := out.got[0].Line
	if len(l) > 1024 || len(l) < 1024-3 || !strings.HasSuffix(l, TruncationMarker) || !utf8.ValidString(l) {
		t.Errorf("truncated line: %d bytes, valid UTF-8 %v, marker %v", len(l), utf8.ValidString(l), strings.HasSuffix(l, TruncationMarker))
	}
	if out.got[1].Line != "short" {
		t.Errorf("next line %q", out.got[1].Line)
	}
	if got := testutil.ToFloat64(lim.truncated.WithLabelValues("real")); got != 1 {
		t.Errorf("truncated = %v, want 1", got)
	}

	var acked int64
	lim = mustLimits(t, LimitsConfig{MaxLineBytes: 1024, DropLongLines: true})
	s, out, drops := guardedStream(t, lim, nil, &acked)
	if err := sendFlush(s, t0, strings.Repeat("z", 5000), 7); err != nil {
		t.Fatal(err)
	}
	if len(out.got) != 0 || acked != 7 {
		t.Errorf("drop mode: %d entries shipped, position %d; want none and 7", len(out.got), acked)
	}
	if got := testutil.ToFloat64(drops.WithLabelValues("real", DropLineTooLong)); got != 1 {
		t.Errorf("line_too_long drops = %v", got)
	}
}

// Label values are cut to limits.max_label_value_bytes (trusted ones
// included), counted once per stream.
func TestLabelValueLimit(t *testing.T) {
	lim := mustLimits(t, LimitsConfig{MaxLabelValueBytes: 16})
	out := &entries{}
	// As json_auto and a labels stage of user would (its own bound, 1000).
	userLabel := StageFunc(func(r *Record) (bool, string) {
		_, v, _ := strings.Cut(r.Line, `"user":"`)
		r.Labels["user"] = strings.TrimSuffix(v, `"}`)
		return true, ""
	})
	s := NewStream(StreamConfig{Tenant: "real", Labels: map[string]string{labels.Tenant: "real", labels.Application: strings.Repeat("a", 100)}},
		New(userLabel), Sink{Consumer: out, Limits: lim})
	for i := range 3 {
		if err := sendFlush(s, t0, `{"user":"`+strings.Repeat("u", 500)+`"}`, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	want := `{application="aaaaaaaaaaaaaaaa", tenant="real", user="uuuuuuuuuuuuuuuu"}`
	if got := out.got[2].Labels; got != want {
		t.Errorf("labels %s, want %s", got, want)
	}
	if got := testutil.ToFloat64(lim.labelsCut.WithLabelValues("real")); got != 1 {
		t.Errorf("label sets cut = %v, want 1 (once per stream)", got)
	}
}

// limits.max_streams_per_tenant: a tenant's new streams beyond the bound
// are dropped and counted; its existing streams go on, other tenants are not
// affected, and a stream idle for an hour frees its place.
func TestStreamLimit(t *testing.T) {
	lim := mustLimits(t, LimitsConfig{MaxStreamsPerTenant: 2})
	var acked int64
	s, out, drops := guardedStream(t, lim, New(jsonLevel), &acked)
	send := func(level string, pos int64) {
		t.Helper()
		if err := sendFlush(s, t0, fmt.Sprintf(`{"level":%q}`, level), pos); err != nil {
			t.Fatal(err)
		}
	}
	send("info", 1)
	send("warn", 2)
	send("error", 3) // a third stream: dropped
	send("info", 4)
	if len(out.got) != 3 || out.got[2].Pos != 4 || acked != 4 {
		t.Fatalf("%d entries, position %d; want info, warn, info and position 4", len(out.got), acked)
	}
	if got := testutil.ToFloat64(drops.WithLabelValues("real", DropStreamLimit)); got != 1 {
		t.Errorf("stream_limit drops = %v, want 1", got)
	}
	if got := testutil.ToFloat64(lim.streams.WithLabelValues("real")); got != 2 {
		t.Errorf("streams gauge = %v, want 2", got)
	}
	// Another tenant has its own bound.
	if !lim.admit("other", "k", time.Now()) {
		t.Error("another tenant refused")
	}
	// Idle streams stop counting after streamIdle.
	later := time.Now().Add(streamIdle + time.Minute)
	if !lim.admit("real", "new", later) {
		t.Error("a new stream refused although the others were idle for an hour")
	}
}

// A stream refused at the tenant's bound, and admitted once the others
// went idle, has its acknowledged time stored with the position like any
// other (a restart then stamps a resend as before).
func TestStreamAdmittedAfterRefusalReportsItsTime(t *testing.T) {
	lim := mustLimits(t, LimitsConfig{MaxStreamsPerTenant: 1})
	var last map[string]int64
	s := NewStream(StreamConfig{
		Tenant: "real",
		Labels: map[string]string{labels.Tenant: "real", labels.Application: "shop", labels.Version: "v1"},
		OnAck:  func(_ int64, l map[string]int64) { last = l },
	}, New(jsonLevel), Sink{Consumer: &entries{}, Limits: lim})
	send := func(level string, pos int64) {
		t.Helper()
		if err := sendFlush(s, t0.Add(time.Duration(pos)), fmt.Sprintf(`{"level":%q}`, level), pos); err != nil {
			t.Fatal(err)
		}
	}
	send("info", 1)
	send("error", 2) // a second stream: refused
	if len(last) != 1 {
		t.Fatalf("after one stream, last times %v", last)
	}
	lim.mu.Lock()
	ts := lim.tenants["real"]
	for k := range ts.last {
		ts.last[k] = time.Now().Add(-2 * streamIdle)
	}
	ts.swept = time.Time{}
	lim.mu.Unlock()
	send("error", 3) // info is idle: admitted now
	if len(last) != 2 {
		t.Errorf("last times %v, want info's and error's", last)
	}
}

// limits.tenants: a tenant not on the list is dropped, counted, and its
// position moves; an allowed one passes.
func TestTenantAllowList(t *testing.T) {
	var acked int64
	s, out, drops := guardedStream(t, mustLimits(t, LimitsConfig{Tenants: []string{"someone-else"}}), nil, &acked)
	if err := sendFlush(s, t0, "x", 5); err != nil {
		t.Fatal(err)
	}
	if len(out.got) != 0 || acked != 5 {
		t.Errorf("not allowed: %d shipped, position %d", len(out.got), acked)
	}
	if got := testutil.ToFloat64(drops.WithLabelValues("real", DropTenantNotAllowed)); got != 1 {
		t.Errorf("tenant_not_allowed drops = %v", got)
	}
	s, out, _ = guardedStream(t, mustLimits(t, LimitsConfig{Tenants: []string{"real"}}), nil, nil)
	if err := sendFlush(s, t0, "x", 1); err != nil || len(out.got) != 1 {
		t.Errorf("allowed tenant: %v, %d shipped", err, len(out.got))
	}
}

func TestNewLimitsErrorsNameKeys(t *testing.T) {
	_, err := NewLimits(LimitsConfig{MaxStreamsPerTenant: -1, MaxLabelValueBytes: 5000, MaxLineBytes: 10, Tenants: []string{"ok", "bad|tenant"}}, nil, nil)
	for _, want := range []string{"limits.max_streams_per_tenant", "limits.max_label_value_bytes", "limits.max_line_bytes", "limits.tenants[1]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// parseRendered reads RenderLabels' output back, as Loki's parser would
// (Go-quoted values).
func parseRendered(s string) (map[string]string, error) {
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("not in braces: %q", s)
	}
	s = s[1 : len(s)-1]
	out := map[string]string{}
	for s != "" {
		name, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("no '=' in %q", s)
		}
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return nil, fmt.Errorf("value of %s: %w", name, err)
		}
		v, _ := strconv.Unquote(q)
		out[name] = v
		s = strings.TrimPrefix(rest[len(q):], ", ")
	}
	return out, nil
}

// The label sanitiser: whatever names and values a label set holds, what is
// rendered has only valid names, no empty values, values of valid UTF-8
// within the bound, and reads back as exactly the sanitised set.
func FuzzSanitizeRender(f *testing.F) {
	f.Add("application", "shop", "log_level", "info", 64)
	f.Add("tenant", "a\"b\\c\n", "__name__", "x", 3)
	f.Add("ok", "\xff\xfe\x00é", "1bad", "", 1)
	f.Add("a", strings.Repeat("€", 40), "b_", "}{=,\"", 7)
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string, max int) {
		if max < 1 || max > labels.MaxValueLength {
			max = 1 + (max%labels.MaxValueLength+labels.MaxValueLength)%labels.MaxValueLength
		}
		in := map[string]string{n1: v1, n2: v2}
		clean, _, _ := labels.Sanitize(in, max)
		for n, v := range clean {
			if labels.ValidName(n) != nil || strings.HasPrefix(n, "__") {
				t.Fatalf("name %q kept", n)
			}
			if v == "" || len(v) > max || !utf8.ValidString(v) {
				t.Fatalf("value %q of %s: %d bytes (max %d), valid UTF-8 %v", v, n, len(v), max, utf8.ValidString(v))
			}
			if orig := in[n]; utf8.ValidString(orig) && !strings.HasPrefix(orig, v) {
				t.Fatalf("value %q of %s is not a prefix of %q", v, n, orig)
			}
		}
		back, err := parseRendered(RenderLabels(clean))
		if err != nil {
			t.Fatalf("rendered %s: %v", RenderLabels(clean), err)
		}
		if len(back) != len(clean) {
			t.Fatalf("rendered %s read back as %v, want %v", RenderLabels(clean), back, clean)
		}
		for n, v := range clean {
			if back[n] != v {
				t.Fatalf("rendered %s read back as %v, want %v", RenderLabels(clean), back, clean)
			}
		}
	})
}
