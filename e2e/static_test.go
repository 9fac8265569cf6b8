package e2e

// Apps outside containers: files.static with podman.enabled: false, the
// seed's layout and the seed's pipeline.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// seedPipeline is the README's "keep every error, 10 % of info", with
// secrets masked, as the seed writes it.
const seedPipeline = `pipeline:
  files:
    - type: multiline
      first_line: '^\{'
    - type: zap
    - type: drop
      level: [info]
      drop_ratio: 0.9
      drop_counter_reason: sampled_info
    - type: redact
`

// goTrace is a Go program's panic as an app's stderr redirected into its
// log file leaves it: lines that are not JSON, blank ones among them.
const goTrace = "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:12 +0x1d"

// seedFile is an app's log file of 5,500 zap lines (no time of their own,
// so that the sample is the same in every run): 5,000 info lines carrying
// an email, 500 errors carrying a password, and a Go panic's trace after
// the error n=1100. entries are the entries the seed's pipeline makes of
// it, redacted, with their levels.
func seedFile(app string) (content string, entries, levels []string) {
	var b strings.Builder
	for n := 1; n <= 5500; n++ {
		if n%11 != 0 {
			fmt.Fprintf(&b, `{"level":"info","msg":"%s request handled","n":%d,"user":"%s"}`+"\n", app, n, fmt.Sprintf("user%d@example.com", n))
			entries = append(entries, fmt.Sprintf(`{"level":"info","msg":"%s request handled","n":%d,"user":"****"}`, app, n))
			levels = append(levels, "info")
			continue
		}
		fmt.Fprintf(&b, `{"level":"error","msg":"%s request failed: db password=s3cret-%d","n":%d}`+"\n", app, n, n)
		e := fmt.Sprintf(`{"level":"error","msg":"%s request failed: db password=****","n":%d}`, app, n)
		if n == 1100 {
			b.WriteString(goTrace + "\n")
			e += "\n" + goTrace
		}
		entries = append(entries, e)
		levels = append(levels, "error")
	}
	return b.String(), entries, levels
}

// Two tenants' apps outside containers, in the seed's layout
// (namespace/{user}/{app}/workplace/logs/{user}_{app}_{version}.log) under
// one files.static glob, shipped by a podtail with podman.enabled: false
// (its socket points nowhere) through the seed's pipeline: each tenant's
// stream carries the tenant, application and version from the path and the
// file's name; the Go panic is joined to the error before it; every error is
// in Loki, 9–11 % of the info lines, the rest counted as sampled_info; the
// emails and passwords are masked; every entry once.
func TestStaticFilesWithoutPodman(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "no Podman at all")
	root := t.TempDir()
	type app struct{ tenant, name, file string }
	apps := []app{{tenant: name("static-a"), name: "orders"}, {tenant: name("static-b"), name: "billing"}}
	want := map[string][]string{}
	for i, a := range apps {
		dir := filepath.Join(root, "namespace", a.tenant, a.name, "workplace", "logs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		content, entries, _ := seedFile(a.name)
		apps[i].file = filepath.Join(dir, fmt.Sprintf("%s_%s_v15.log", a.tenant, a.name))
		if err := os.WriteFile(apps[i].file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		want[a.tenant] = entries
	}
	p := startPodtail(t, podtailOpts{noPodman: true, socket: "unix:///nonexistent/podman.sock", extra: fmt.Sprintf(`files:
  static:
    - glob: %s/namespace/*/*/workplace/logs
%s`, root, seedPipeline)})

	for _, a := range apps {
		sel := fmt.Sprintf(`{tenant=%q, application=%q, version="v15", stream="file"}`, a.tenant, a.name)
		eventually(t, 60*time.Second, a.tenant+"'s lines shipped or dropped", func() bool {
			n, err := testbed.Count(bed.lokiURL, a.tenant, sel)
			return err == nil && n+int(p.metric("podtail_pipeline_entries_dropped_total", "tenant", a.tenant, "reason", "sampled_info")) >= 5500
		})
		dropped := int(p.metric("podtail_pipeline_entries_dropped_total", "tenant", a.tenant, "reason", "sampled_info"))
		byLevel, err := testbed.CountBy(bed.lokiURL, a.tenant, fmt.Sprintf(`{tenant=%q}`, a.tenant), "application, version, stream, log_level")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, g := range byLevel {
			if g.Labels["application"] != a.name || g.Labels["version"] != "v15" || g.Labels["stream"] != "file" {
				t.Errorf("%s: lines under %v", a.tenant, g.Labels)
			}
			got[g.Labels["log_level"]] += g.N
		}
		t.Logf("%s: %v in Loki, %d info lines sampled away", a.tenant, got, dropped)
		if len(got) != 2 || got["error"] != 500 || got["info"] < 450 || got["info"] > 550 || got["info"]+dropped != 5000 {
			t.Errorf("%s: %v in Loki and %d info lines sampled away; want all 500 errors and 450–550 of the 5,000 info lines, the rest sampled away",
				a.tenant, got, dropped)
		}
		linesOnce(t, lines(query(t, a.tenant, sel)), want[a.tenant], a.tenant)
		panics := lines(query(t, a.tenant, sel+` |= "goroutine 1 [running]:"`))
		if len(panics) != 1 || !strings.HasSuffix(panics[0], `"n":1100}`+"\n"+goTrace) {
			t.Errorf("%s: entries holding the panic: %q, want the error n=1100 and the trace joined as one", a.tenant, panics)
		}
		for _, secret := range []string{"@example.com", "s3cret-"} {
			if n := count(t, a.tenant, fmt.Sprintf(`{tenant=%q} |= %q`, a.tenant, secret)); n != 0 {
				t.Errorf("%s: %d lines in Loki still hold %q", a.tenant, n, secret)
			}
		}
	}
}
