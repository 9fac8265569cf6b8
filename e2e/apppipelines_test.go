package e2e

// Pipelines chosen per app (pipeline.apps): two apps of one tenant on one
// host, one redacted and sampled, the other untouched.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// secretLines are an app's JSON lines carrying what 日志脱敏 must mask: a
// password (a JSON field and key=value in the message), a token, an email,
// a Chinese mobile number and an 18-digit ID-card number (check character
// X or a digit). 5,000 info, 500 error and 250 warn lines, interleaved.
// masked[i] is lines[i] as the redact stage of appPipelines must leave it.
// The lines hold no time and nothing of the run, so the sample the drop
// stage takes (a hash of the line) is the same in every run.
func secretLines() (lines, masked, levels []string) {
	const tmpl = `{"level":%q,"msg":"order %d placed by %s with password=%s","n":%d,` +
		`"user":{"email":%q,"mobile":%q,"id_card":%q},"password":%q,"token":%q}`
	for n := 1; n <= 5750; n++ {
		level := "info"
		switch {
		case n%23 == 0:
			level = "warn"
		case n%11 == 0:
			level = "error"
		}
		email := fmt.Sprintf("user%d@example.com", n)
		pw := fmt.Sprintf("Hunter2-%d", n)
		mobile := fmt.Sprintf("1%d%09d", 3+n%7, n)                                 // 13x..19x, 11 digits
		idCard := fmt.Sprintf("11010519491231%03d%c", n%1000, "0123456789X"[n%11]) // 11010519491231002X and the like
		token := fmt.Sprintf("tk_%016x", n*7919)
		lines = append(lines, fmt.Sprintf(tmpl, level, n, email, pw, n, email, mobile, idCard, pw, token))
		m := "****"
		masked = append(masked, fmt.Sprintf(tmpl, level, n, m, m, n, m, m, m, m, m))
		levels = append(levels, level)
	}
	return lines, masked, levels
}

// appPipelines gives app A (tenant's containers labelled team=payments)
// the seed's sampling, "all errors, 10 % of info", and redaction with the
// custom expressions a Chinese platform needs, for its output and its
// files alike; everything else keeps the default pipelines.
func appPipelines(tenant string) string {
	const stages = `
        - type: drop
          level: [info]
          drop_ratio: 0.9
          drop_counter_reason: sampled_info
        - type: redact
          expressions:
            - '(?:^|[^0-9])(1[3-9][0-9]{9})(?:[^0-9]|$)'
            - '(?:^|[^0-9])([1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx])(?:[^0-9Xx]|$)'`
	return fmt.Sprintf(`pipeline:
  apps:
    - match: {tenant: %q, application: "app-?a", labels: {team: payments}}
      container:
        - type: json_auto%s
      files:
        - type: zap%s
`, tenant, stages, stages)
}

// Two apps of one tenant on one host print the same 5,750 JSON lines on
// stdout and write them to a log file in their mounted logs directory.
// App A (pipeline.apps, selected by tenant, application and a container
// label) ships every error and warn line, between 9 and 11 % of the 5,000
// info lines, and none of the others (counted as sampled_info, so what
// Loki holds plus what was dropped is exactly what was written), each line
// redacted: passwords, tokens, emails, mobile and ID-card numbers masked,
// the rest as written. App B ships every line untouched. Counts per level
// and stream are checked in Loki.
func TestPerAppPipelines(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "a pipeline is chosen and run after the reader, whatever the log driver")
	tenant := name("perapp")
	p := startPodtail(t, podtailOpts{extra: appPipelines(tenant)})
	all, masked, levels := secretLines()
	in := filepath.Join(t.TempDir(), "lines.jsonl")
	content := strings.Join(all, "\n") + "\n"
	if err := os.WriteFile(in, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"appa", "appb"} {
		team := map[string]string{"appa": "payments", "appb": "shop"}[app]
		logs := appDir(t, tenant, app)
		runContainer(t, name("perapp", app), tenant, app, "v1", "cat /in/lines.jsonl; sleep 600",
			"--label", "team="+team, "-v", in+":/in/lines.jsonl:ro", "-v", logs+":/app/workplace/logs")
		if err := os.WriteFile(filepath.Join(logs, tenant+"_"+app+"_v1.log"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{}
	for _, l := range levels {
		want[l]++
	}
	if want["info"] != 5000 || want["error"] != 500 || want["warn"] != 250 {
		t.Fatalf("the test's lines: %v", want)
	}

	// App B: every line, as written, on both streams.
	for _, st := range []string{"stdout", "file"} {
		sel := fmt.Sprintf(`{tenant=%q, application="appb", stream=%q}`, tenant, st)
		waitCount(t, tenant, sel, len(all), 60*time.Second)
		if got := linesOnce(t, lines(query(t, tenant, sel)), all, "app B, "+st); len(got) != len(all) {
			t.Errorf("app B, %s: %d of the %d lines in Loki", st, len(got), len(all))
		}
	}

	// App A: all of the 5,750 lines are accounted for (shipped or sampled
	// away) once the dropped ones are counted.
	eventually(t, 60*time.Second, "app A's lines shipped or dropped", func() bool {
		dropped := int(p.metric("podtail_pipeline_entries_dropped_total", "tenant", tenant, "reason", "sampled_info"))
		n, err := testbed.Count(bed.lokiURL, tenant, fmt.Sprintf(`{tenant=%q, application="appa"}`, tenant))
		return err == nil && n+dropped >= 2*len(all)
	})
	dropped := int(p.metric("podtail_pipeline_entries_dropped_total", "tenant", tenant, "reason", "sampled_info"))
	groups, err := testbed.CountBy(bed.lokiURL, tenant, fmt.Sprintf(`{tenant=%q, application="appa"}`, tenant), "stream, log_level")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, g := range groups {
		got[g.Labels["stream"]+" "+g.Labels["log_level"]] = g.N
	}
	t.Logf("app A in Loki by stream and level: %v; %d info lines sampled away", got, dropped)
	for _, st := range []string{"stdout", "file"} {
		for _, lv := range []string{"error", "warn"} {
			if got[st+" "+lv] != want[lv] {
				t.Errorf("app A, %s, %s: %d in Loki, want all %d", st, lv, got[st+" "+lv], want[lv])
			}
		}
		if info := got[st+" info"]; info < 450 || info > 550 {
			t.Errorf("app A, %s: %d info lines in Loki, want 9–11 %% of %d", st, info, want["info"])
		}
	}
	if kept := got["stdout info"] + got["file info"]; kept+dropped != 2*want["info"] {
		t.Errorf("app A: %d info lines in Loki + %d sampled away = %d, want the %d written", kept, dropped, kept+dropped, 2*want["info"])
	}
	if len(groups) != 6 {
		t.Errorf("app A: %d stream/level groups in Loki, want 6: %v", len(groups), got)
	}

	// Every line of app A's is one of the lines written, masked, once per
	// stream; the same lines are sampled on both.
	perStream := map[string][]int{}
	for _, st := range []string{"stdout", "file"} {
		sel := fmt.Sprintf(`{tenant=%q, application="appa", stream=%q}`, tenant, st)
		perStream[st] = linesOnce(t, lines(query(t, tenant, sel)), masked, "app A, "+st)
	}
	if fmt.Sprint(perStream["stdout"]) != fmt.Sprint(perStream["file"]) {
		t.Errorf("app A: the container's output and its file kept different lines (%d and %d)", len(perStream["stdout"]), len(perStream["file"]))
	}
	for _, secret := range []string{"Hunter2-", "@example.com", "tk_", "11010519491231"} {
		if n := count(t, tenant, fmt.Sprintf(`{tenant=%q, application="appa"} |= %q`, tenant, secret)); n != 0 {
			t.Errorf("app A: %d lines in Loki still hold %q", n, secret)
		}
	}
}

// linesOnce checks that each of got is one of want, and none twice, and
// returns their indexes in want, in order.
func linesOnce(t *testing.T, got, want []string, what string) []int {
	t.Helper()
	index := make(map[string]int, len(want))
	for i, w := range want {
		index[w] = i
	}
	seen := make([]bool, len(want))
	var out []int
	for _, l := range got {
		i, ok := index[l]
		if !ok {
			t.Fatalf("%s: a line in Loki that is none of those expected:\n%s", what, l)
		}
		if seen[i] {
			t.Fatalf("%s: line %d in Loki twice:\n%s", what, i+1, l)
		}
		seen[i] = true
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}
