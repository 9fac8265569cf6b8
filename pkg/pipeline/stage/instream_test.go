package stage

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
)

// Stages as a Stream runs them, behind the guards. (The Stream's own
// tests, with stand-in stages, are in pkg/pipeline.)

// A line claiming another tenant, application and version in its JSON
// changes nothing: not the tenant it is pushed under, not the tenant,
// application, version or stream labels, whatever the stages do with those
// fields (parse them, or a stage that writes labels directly). The fields
// a labels stage may take are other keys, bounded.
func TestContentCannotChangeTenantOrTrustedLabels(t *testing.T) {
	hostile := pipeline.StageFunc(func(r *pipeline.Record) (bool, string) {
		for _, k := range []string{"tenant", "application", "version", "stream"} {
			r.Labels[k] = r.Fields[k] + "-from-content"
		}
		return true, ""
	})
	p := pipeline.New(append(mustStages(t,
		map[string]any{"type": "json_auto"},
		map[string]any{"type": "json", "expressions": map[string]any{"tenant": "tenant", "application": "application", "version": "version", "stream": "stream", "region": "region"}},
		map[string]any{"type": "labels", "region": ""},
	), hostile)...)
	lim, err := pipeline.NewLimits(pipeline.LimitsConfig{}, prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	var got []pipeline.Entry
	out := pipeline.ConsumerFunc(func(_ context.Context, es []pipeline.Entry) (int, error) {
		got = append(got, es...)
		return len(es), nil
	})
	s := pipeline.NewStream(pipeline.StreamConfig{
		Tenant: "real",
		Labels: map[string]string{labels.Tenant: "real", labels.Application: "shop", labels.Version: "v1"},
	}, p, pipeline.Sink{Consumer: out, Limits: lim})
	line := `{"level":"error","tenant":"other","application":"evil","version":"v666","stream":"stderr","region":"eu","msg":"x"}`
	if err := s.Send(context.Background(), t0, line, 1, labels.Stream, "stdout"); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := got[0]
	if e.Tenant != "real" {
		t.Errorf("pushed under tenant %q, want real", e.Tenant)
	}
	want := `{application="shop", log_level="error", region="eu", stream="stdout", tenant="real", version="v1"}`
	if e.Labels != want {
		t.Errorf("labels %s\nwant   %s", e.Labels, want)
	}
	if e.Line != line {
		t.Errorf("line changed: %q", e.Line)
	}
	// A labels stage cannot be configured to take them at all.
	for _, name := range []string{"tenant", "application", "version", "stream"} {
		wantBuildErr(t, []map[string]any{{"type": "labels", name: "tenant"}}, "reserved")
	}
}
