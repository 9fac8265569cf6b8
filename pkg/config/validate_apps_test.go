package config

import (
	"strings"
	"testing"
)

// appsErrors loads a configuration whose pipeline section is pipeline and
// returns the problems Load found with pipeline.apps, one per line.
func appsErrors(t *testing.T, pipeline string) []string {
	t.Helper()
	_, err := Load(writeFile(t, "data_dir: /tmp/podtail\npipeline:\n"+pipeline), nil)
	if err == nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if strings.Contains(l, "pipeline.apps") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		t.Fatalf("Load failed, but not on pipeline.apps: %v", err)
	}
	return out
}

// Every problem of pipeline.apps is reported, each naming its key, and the
// defaults' problems are not reported again under it.
func TestValidateAppsNamesEachProblem(t *testing.T) {
	for name, c := range map[string]struct {
		yaml string
		want []string
	}{
		"regexes": {`
  apps:
    - match: {tenant: acme, application: "shop(", labels: {team: "*"}}
      files: [{type: zap}]
    - match: {version: "v[1"}
      container: []
`, []string{
			"pipeline.apps[0].match.application: error parsing regexp: missing closing ): `shop(`",
			"pipeline.apps[0].match.labels.team: error parsing regexp: missing argument to repetition operator: `*`",
			"pipeline.apps[1].match.version: error parsing regexp: missing closing ]: `[1`",
		}},
		"stages": {`
  files: [{type: jsn}]
  apps:
    - match: {application: shop}
      files:
        - {type: multiline, first_line: '^\{', max_lines: -1}
        - {type: zap}
        - {type: json, expresions: {level: lvl}}
    - match: {application: cart}
      container: [{type: zap}, {type: multiline}]
`, []string{
			"pipeline.apps[0].files[0]: multiline: max_lines",
			"pipeline.apps[0].files[2]: json: expresions: unknown option",
			"pipeline.apps[1].container[1]: multiline: must be the first stage",
		}},
		"never applies": {`
  apps:
    - match: {application: shop, stream: stderr}
      files: [{type: zap}]
    - match: {stream: file}
      container: [{type: json_auto}]
    - match: {application: cart}
    - match: {stream: stdout}
      container: [{type: json_auto}]
      files: [{type: zap}]
`, []string{
			`pipeline.apps[0].match.stream: "stderr" does not match file, the stream of log files, and the entry has only files stages: it can never apply`,
			`pipeline.apps[1].match.stream: "file" matches neither stdout nor stderr, and the entry has only container stages: it can never apply`,
			"pipeline.apps[2]: has neither container nor files",
			`pipeline.apps[3].files: never used: match.stream "stdout" does not match file`,
		}},
	} {
		t.Run(name, func(t *testing.T) {
			got := appsErrors(t, c.yaml)
			if len(got) != len(c.want) {
				t.Errorf("%d problems with pipeline.apps, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for _, w := range c.want {
				found := false
				for _, g := range got {
					found = found || strings.Contains(g, w)
				}
				if !found {
					t.Errorf("no problem says %q; got:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}

// A working pipeline.apps passes, and reaches the selector whole: labels,
// stream, and an empty list (no stages) apart from an absent one (the
// entry is not for that kind).
func TestValidateAppsAcceptsAndConverts(t *testing.T) {
	cfg, err := Load(writeFile(t, `data_dir: /tmp/podtail
pipeline:
  apps:
    - match: {tenant: "acme|beta", application: shop, version: 'v1\..*', stream: stderr, labels: {team: pay.*}}
      container: [{type: multiline, first_line: '^panic:|^goroutine '}, {type: json_auto}]
    - match: {application: cart}
      container: []
      files: [{type: zap}, {type: redact}]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Pipeline.SelectorConfig()
	if len(sc.Apps) != 2 || len(sc.Container) != 1 || len(sc.Files) != 1 {
		t.Fatalf("selector config %+v: want 2 apps and the default lists", sc)
	}
	m := sc.Apps[0].Match
	if m.Tenant != "acme|beta" || m.Application != "shop" || m.Version != `v1\..*` || m.Stream != "stderr" || m.Labels["team"] != "pay.*" {
		t.Errorf("apps[0].match became %+v", m)
	}
	if sc.Apps[0].Files != nil || sc.Apps[1].Container == nil || len(sc.Apps[1].Container) != 0 || len(sc.Apps[1].Files) != 2 {
		t.Errorf("lists: apps[0].files %v (want absent), apps[1].container %v (want empty), apps[1].files %v",
			sc.Apps[0].Files, sc.Apps[1].Container, sc.Apps[1].Files)
	}
}
