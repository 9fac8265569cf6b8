package discovery_test

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/podman"
)

// inPod is a container of pod ptv-pod1 with the given labels of its own and
// its pod's.
func inPod(own, pod map[string]string) podman.Container {
	c := container(own)
	c.PodID, c.Pod, c.PodLabels = "594852617ca7", "ptv-pod1", pod
	return c
}

// With pod_labels, each of tenant, application and version comes from the
// container's own labels when it has it (not empty), else from its pod's;
// Target.Labels is the container's labels over the pod's. Without
// pod_labels the pod's are not looked at.
func TestMapPodLabels(t *testing.T) {
	cfg := mapCfg
	cfg.PodLabels = true
	m := discovery.NewMapper(cfg)
	pod := map[string]string{"tenant": "t1", "application": "a", "version": "v1", "team": "shop"}
	for _, tc := range []struct {
		own                  map[string]string
		tenant, app, version string
	}{
		{nil, "t1", "a", "v1"},
		{map[string]string{"version": "v2"}, "t1", "a", "v2"},
		{map[string]string{"application": "own", "version": ""}, "t1", "own", "v1"},
		{map[string]string{"tenant": "acme"}, "acme", "a", "v1"},
	} {
		c := inPod(tc.own, pod)
		tg := mustMap(t, m, c)
		if tg.Tenant != tc.tenant || tg.App != tc.app || tg.Version != tc.version || tg.Pod != "ptv-pod1" {
			t.Errorf("own %v: %s/%s/%s in pod %q, want %s/%s/%s in ptv-pod1", tc.own, tg.Tenant, tg.App, tg.Version, tg.Pod, tc.tenant, tc.app, tc.version)
		}
		if tg.Labels["team"] != "shop" || tg.Labels["version"] != tc.version {
			t.Errorf("own %v: Labels %v, want the pod's team and the version used", tc.own, tg.Labels)
		}
		tg.Labels["team"] = "changed"
		if pod["team"] != "shop" {
			t.Fatal("the target's labels are the pod's map: a change to one changes the other")
		}
	}

	skipped(t, discovery.NewMapper(mapCfg), inPod(nil, pod), `no "tenant" label`)
	if tg := mustMap(t, discovery.NewMapper(mapCfg), inPod(map[string]string{"tenant": "acme"}, pod)); tg.App != "" || tg.Labels["team"] != "" {
		t.Errorf("pod_labels off: %+v, want none of the pod's labels", tg)
	}
}

// A container whose pod's labels could not be read, and that lacks a
// tenant of its own, is skipped saying both; the pod's infra container is
// skipped as such, though it carries the pod's labels.
func TestMapPodUnknownAndInfra(t *testing.T) {
	cfg := mapCfg
	cfg.PodLabels = true
	m := discovery.NewMapper(cfg)
	c := inPod(nil, nil)
	c.Pod, c.PodErr = "", errors.New("inspect pod 594852617ca7: 403 Forbidden")
	skipped(t, m, c, `no "tenant" label`, "its pod's labels are unknown", "403 Forbidden")
	c.Labels = map[string]string{"tenant": "acme"}
	mustMap(t, m, c) // the pod is not needed

	infra := inPod(map[string]string{"tenant": "t1"}, map[string]string{"tenant": "t1"})
	infra.Infra = true
	skipped(t, m, infra, `infra container of pod "ptv-pod1"`)
}

// discovery.select: keep and drop by name, image, pod and labels (the
// pod's included), anchored, in order; the first rule that drops names
// itself, its action, the value and the regex. Selection comes before the
// tenant: a dropped container is dropped by the rule, not for a label.
func TestMapSelect(t *testing.T) {
	rule := func(action, source, regex string) discovery.SelectRule {
		t.Helper()
		r, err := discovery.NewSelectRule(action, source, regex)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	named := func(name string, own map[string]string) podman.Container {
		c := container(own)
		c.Name, c.Image = name, "localhost/app:1"
		return c
	}
	acme := map[string]string{"tenant": "acme"}
	for _, tc := range []struct {
		rules []discovery.SelectRule
		c     podman.Container
		drop  string // "": kept
	}{
		{[]discovery.SelectRule{rule("drop", "name", "podtail.*")}, named("podtail", acme),
			`dropped by discovery.select[0] (drop, name "podtail" matches "podtail.*")`},
		{[]discovery.SelectRule{rule("drop", "name", "podtail")}, named("podtail-test", acme), ""}, // anchored
		{[]discovery.SelectRule{rule("drop", "name", "podtail.*")}, named("my-podtail", acme), ""},
		{[]discovery.SelectRule{rule("keep", "label:tenant", "acme|beta"), rule("drop", "name", "podtail.*")}, named("shop", map[string]string{"tenant": "gamma"}),
			`dropped by discovery.select[0] (keep, label:tenant "gamma" does not match "acme|beta")`},
		{[]discovery.SelectRule{rule("keep", "label:tenant", "acme|beta"), rule("drop", "name", "podtail.*")}, named("podtail", acme),
			`dropped by discovery.select[1] (drop, name "podtail" matches "podtail.*")`},
		{[]discovery.SelectRule{rule("keep", "label:tenant", "acme|beta"), rule("drop", "name", "podtail.*")}, named("shop", acme), ""},
		{[]discovery.SelectRule{rule("drop", "image", "localhost/.*")}, named("shop", acme),
			`dropped by discovery.select[0] (drop, image "localhost/app:1" matches "localhost/.*")`},
		{[]discovery.SelectRule{rule("keep", "pod", "shop-.*")}, named("shop", acme),
			`dropped by discovery.select[0] (keep, pod "" does not match "shop-.*")`},
		{[]discovery.SelectRule{rule("keep", "pod", "ptv-.*")}, inPod(acme, nil), ""},
		{[]discovery.SelectRule{rule("drop", "label:team", "infra")}, inPod(acme, map[string]string{"team": "infra"}),
			`dropped by discovery.select[0] (drop, label:team "infra" matches "infra")`},
		{[]discovery.SelectRule{rule("drop", "label:absent", "")}, named("shop", acme),
			`dropped by discovery.select[0] (drop, label:absent "" matches "")`},
		{[]discovery.SelectRule{rule("drop", "name", "nolabel")}, named("nolabel", nil),
			`dropped by discovery.select[0] (drop, name "nolabel" matches "nolabel")`},
	} {
		cfg := mapCfg
		cfg.PodLabels, cfg.Select = true, tc.rules
		m := discovery.NewMapper(cfg)
		if tc.drop == "" {
			mustMap(t, m, tc.c)
			continue
		}
		_, err := m.Map(tc.c)
		if !errors.Is(err, discovery.ErrSkipped) || !strings.HasSuffix(err.Error(), ": "+tc.drop) {
			t.Errorf("%s: Map error %v, want %q", tc.c.Name, err, tc.drop)
		}
	}
}

// A bad rule is refused, naming what is wrong with it.
func TestNewSelectRuleBad(t *testing.T) {
	for _, tc := range []struct{ action, source, regex, want string }{
		{"keeep", "name", "x", `action "keeep"`},
		{"drop", "labels:x", "x", `source "labels:x"`},
		{"drop", "label:", "x", `source "label:"`},
		{"drop", "name", "(", "regex"},
	} {
		if _, err := discovery.NewSelectRule(tc.action, tc.source, tc.regex); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSelectRule(%q, %q, %q) = %v, want an error naming %s", tc.action, tc.source, tc.regex, err, tc.want)
		}
	}
}

// Every target carries static_labels on its streams, and the source
// metadata named (container, image, pod when in one, host unless a static
// label says it), nothing when none is named.
func TestMapSharedContext(t *testing.T) {
	cfg := mapCfg
	cfg.PodLabels = true
	cfg.Shared = discovery.Shared{
		StaticLabels: map[string]string{"cluster": "prod", "host": "web-1"},
		Metadata:     []string{"container", "image", "pod", "host"}, Host: "node-7",
	}
	c := inPod(map[string]string{"tenant": "acme"}, nil)
	c.Image = "localhost/shop:2"
	tg := mustMap(t, discovery.NewMapper(cfg), c)
	// host is a static label here: not metadata too (Loki would rename it).
	if want := map[string]string{"container": "shop-1", "image": "localhost/shop:2", "pod": "ptv-pod1"}; !maps.Equal(tg.Metadata, want) {
		t.Errorf("Metadata = %v, want %v", tg.Metadata, want)
	}
	if ls := tg.StreamLabels(); ls["cluster"] != "prod" || ls["host"] != "web-1" || ls["tenant"] != "acme" {
		t.Errorf("StreamLabels = %v", ls)
	}
	if tg.Image != "localhost/shop:2" || tg.Pod != "ptv-pod1" {
		t.Errorf("Image %q, Pod %q", tg.Image, tg.Pod)
	}

	solo := container(map[string]string{"tenant": "acme"})
	if _, ok := mustMap(t, discovery.NewMapper(cfg), solo).Metadata["pod"]; ok {
		t.Error("pod metadata for a container in no pod")
	}

	cfg.Shared = discovery.Shared{StaticLabels: map[string]string{}, Metadata: []string{"host"}, Host: "node-7"}
	tg = mustMap(t, discovery.NewMapper(cfg), c)
	if !maps.Equal(tg.Metadata, map[string]string{"host": "node-7"}) || tg.Static != nil {
		t.Errorf("only host named, no static labels: Metadata %v, Static %#v", tg.Metadata, tg.Static)
	}
	cfg.Shared.Metadata = []string{}
	if tg = mustMap(t, discovery.NewMapper(cfg), c); tg.Metadata != nil {
		t.Errorf("source_metadata []: Metadata %v, want none", tg.Metadata)
	}
}
