package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateGolden = flag.Bool("update", false, "rewrite pipeline test's golden files (testdata/pipelinetest/*.golden)")

const ptDir = "testdata/pipelinetest"

// runPodtail runs podtail with args and stdin as main does, with the clock
// and host name of pipeline test fixed; it returns stdout and the exit
// status main would give.
func runPodtail(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	now, host := pipelineTestNow, pipelineTestHost
	t.Cleanup(func() { pipelineTestNow, pipelineTestHost = now, host })
	pipelineTestNow = func() time.Time { return time.Date(2024, 11, 25, 0, 0, 30, 0, time.UTC) }
	pipelineTestHost = func() (string, error) { return "web-1.example", nil }
	t.Setenv("PODTAIL_CONFIG", "")
	root := newRootCmd()
	var out bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return out.String(), 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return out.String(), ee.code
	}
	return out.String() + err.Error(), 1
}

// golden compares got with the golden file name, or rewrites it (-update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(ptDir, name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -run %s -update rewrites it; check the diff):\n--- got\n%s--- want\n%s", path, t.Name(), got, want)
	}
}

func input(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ptDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The seed's zap lines through test777's pipeline (pipeline.apps[0]: zap,
// 10 % of info kept, secrets and Chinese mobile and ID-card numbers
// masked): an info line sampled out, an error line with its caller, a line
// with a password, mobile numbers, an ID card and an e-mail address, an
// info line kept; every line parses (exit 0). The file's path gives tenant
// and application (files.path_regex), its name the version.
func TestPipelineTestSeedTest777(t *testing.T) {
	file := "/srv/namespace/beiluo/test777/workplace/logs/beiluo_test777_v1.log"
	out, code := runPodtail(t, input(t, "test777.log"), "pipeline", "test", "-c", filepath.Join(ptDir, "seed.yaml"), "--file", file)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	golden(t, "test777.golden", out)
	for _, want := range []string{
		"# pipeline.apps[0].files [multiline, zap, drop, redact]",
		"=> DROPPED sampled_info by [2] drop",
		`log_level="error"`, "metadata caller=order/handler.go:57",
		`"password":"****","mobile":"****","id_card":"****","note":"call **** or mail ****"`,
		"# 4 entries from 4 lines: 3 shipped, 1 dropped, 0 failed to parse",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, secret := range []string{"hunter2", "13812345678", "13912345678", "11010519491231002X", "zs@example.com"} {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "     time ") && strings.Contains(l, secret) {
				t.Errorf("shipped entry holds %q: %s", secret, l)
			}
		}
	}

	// The same as JSON, one object per entry, each stage a step.
	out, code = runPodtail(t, input(t, "test777.log"), "pipeline", "test", "-c", filepath.Join(ptDir, "seed.yaml"), "--file", file, "--json")
	if code != 0 {
		t.Errorf("--json: exit %d, want 0", code)
	}
	golden(t, "test777.json.golden", out)
	var reports []testReport
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r testReport
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("--json line %q: %v", l, err)
		}
		reports = append(reports, r)
	}
	if len(reports) != 4 {
		t.Fatalf("%d reports, want 4", len(reports))
	}
	if r := reports[0]; r.Shipped || r.Dropped != "sampled_info" || r.DropBy != "apps[0].files[2]" || len(r.Steps) != 2 {
		t.Errorf("sampled info line: %+v", r)
	}
	if r := reports[1]; !r.Shipped || r.Entry.Time != "2024-11-25T00:00:01.5Z" || r.Steps[0].TimeFrom != "ts" || r.Steps[0].Labels["log_level"] != "error" {
		t.Errorf("error line: %+v", r)
	}
	if s := reports[2].Steps[2]; s.Type != "redact" || !s.LineChanged || s.Fields["password"] != "****" || s.Fields["mobile"] != "****" {
		t.Errorf("redact step: %+v", s)
	}
}

// Lines the default files pipeline (zap) cannot parse: a panic's first
// line and a cut JSON object fail (exit 1), while a zap console line
// parses; the failed lines are still shipped, with the last time read + 1ns.
func TestPipelineTestMalformed(t *testing.T) {
	out, code := runPodtail(t, input(t, "malformed.log"), "pipeline", "test", "-c", filepath.Join(ptDir, "seed.yaml"),
		"--tenant", "acme", "--app", "shop", "--file", "u1_shop_v2.log")
	if code != 1 {
		t.Errorf("exit %d, want 1 (a line failed to parse)", code)
	}
	golden(t, "malformed.golden", out)
	for _, want := range []string{
		"# pipeline.files [zap]",
		"[0] zap: parsed (zap console line)",
		"[0] zap: PARSE FAILED (neither a JSON object nor zap console output)",
		"[0] zap: PARSE FAILED (starts with { but is not one JSON object)",
		"# 4 entries from 4 lines: 4 shipped, 0 dropped, 2 failed to parse",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// Container output: a Go panic on stderr is joined into one entry by the
// container pipeline's multiline spec (the last at the end of the input);
// json_auto passes non-JSON output untouched, which is no failure.
func TestPipelineTestContainer(t *testing.T) {
	out, code := runPodtail(t, input(t, "container.log"), "pipeline", "test", "-c", filepath.Join(ptDir, "seed.yaml"),
		"--tenant", "acme", "--app", "shop", "--version", "v2", "--stream", "stderr")
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	golden(t, "container.golden", out)
	for _, want := range []string{"# pipeline.container [multiline, json_auto]", "lines 2-7 (joined):", `stream="stderr"`, "# 4 entries from 9 lines", "moved 1ns past its stream's previous entry"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// --app, --tenant, --version, --stream, --file and --label pick the
// pipeline.apps entry podtail would.
func TestPipelineTestSelection(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "podtail.yaml")
	seed, err := os.ReadFile(filepath.Join(ptDir, "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	extra := `
    - match: {labels: {team: pay}}
      container: [{type: json, expressions: {msg: msg}}]
`
	if err := os.WriteFile(cfg, append(seed, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	line := `{"level":"info","ts":1732492800,"msg":"x"}` + "\n"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tenant", "beiluo", "--app", "test777"}, "apps[0].files"},
		{[]string{"--tenant", "other", "--app", "test777"}, "files"}, // apps[0] is beiluo's only
		{[]string{"--tenant", "beiluo", "--app", "test7777"}, "files"},
		{[]string{"--app", "order-api", "--version", "v3"}, "apps[1].files"},
		{[]string{"--app", "payment", "--version", "v2"}, "apps[1].files"},
		{[]string{"--app", "payment", "--version", "v1"}, "files"},
		{[]string{"--app", "order-api", "--file", "u_order-api_v3.log"}, "apps[1].files"},                                          // the name's version wins
		{[]string{"--app", "order-api", "--version", "v3", "--file", "u_order-api_v1.log"}, "files"},                               // ... either way
		{[]string{"--file", "/srv/namespace/beiluo/test777/workplace/logs/beiluo_test777_v1.log"}, "apps[0].files"},                // tenant and app from the path
		{[]string{"--file", "/srv/namespace/acme/test777/workplace/logs/acme_test777_v1.log"}, "files"},                            // another tenant's test777
		{[]string{"--tenant", "beiluo", "--file", "/srv/namespace/acme/test777/workplace/logs/x_test777_v1.log"}, "apps[0].files"}, // --tenant wins over the path
		{[]string{"--tenant", "beiluo", "--app", "test777", "--stream", "stdout"}, "container"},                                    // apps[0] has no container stages
		{[]string{"--app", "payment", "--version", "v2", "--stream", "stderr"}, "container"},
		{[]string{"--stream", "stdout", "--label", "team=pay"}, "apps[2].container"},
		{[]string{"--stream", "stdout", "--label", "team=ops"}, "container"},
		{[]string{"--label", "team=pay"}, "files"}, // apps[2] has no files stages
	} {
		out, code := runPodtail(t, line, append([]string{"pipeline", "test", "-c", cfg, "--json"}, c.args...)...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", c.args, code, out)
			continue
		}
		var r testReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Errorf("%v: %v in %q", c.args, err, out)
			continue
		}
		if r.Pipeline != "pipeline."+c.want {
			t.Errorf("%v: pipeline %s, want pipeline.%s", c.args, r.Pipeline, c.want)
		}
	}
}

// A bad configuration, bad flags and unreadable input exit 2; an input
// file argument is read like standard input.
func TestPipelineTestExit(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("pipeline:\n  files:\n    - {type: jsn}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(ptDir, "seed.yaml")
	for _, args := range [][]string{
		{"-c", bad},
		{"-c", filepath.Join(dir, "missing.yaml")},
		{"-c", seed, "--stream", "journal"},
		{"-c", seed, "--stream", "stdout", "--file", "a_b_v1.log"},
		{"-c", seed, "--label", "team"},
		{"-c", seed, "--no-such-flag"},
		{"-c", seed, filepath.Join(dir, "missing.log")},
		{"-c", seed, "a.log", "b.log"},
	} {
		if out, code := runPodtail(t, "", append([]string{"pipeline", "test"}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, out)
		}
	}
	out, code := runPodtail(t, "", "pipeline", "test", "-c", seed, "--tenant", "beiluo", "--app", "test777", filepath.Join(ptDir, "test777.log"))
	if code != 0 || !strings.Contains(out, "# 4 entries from 4 lines: 3 shipped, 1 dropped, 0 failed to parse") {
		t.Errorf("file argument: exit %d, output:\n%s", code, out)
	}
}

// The limits.* guards apply as in podtail run: a tenant not in
// limits.tenants is dropped before the stages, a long line is cut (or,
// with line_too_long: drop, dropped), and the report says so.
func TestPipelineTestGuards(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "podtail.yaml")
	write := func(extra string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte("limits:\n  tenants: [acme]\n  max_line_bytes: 1KiB\n"+extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := `{"level":"info","msg":"` + strings.Repeat("x", 2000) + `"}` + "\n"
	write("")
	out, code := runPodtail(t, long, "pipeline", "test", "-c", cfg, "--tenant", "other", "--app", "a")
	if code != 0 || !strings.Contains(out, "=> DROPPED tenant_not_allowed by limits") {
		t.Errorf("tenant not allowed: exit %d:\n%s", code, out)
	}
	out, code = runPodtail(t, long, "pipeline", "test", "-c", cfg, "--tenant", "acme", "--app", "a")
	if code != 1 || !strings.Contains(out, "limits: cut to limits.max_line_bytes (1024)") || !strings.Contains(out, "…[truncated by podtail]") ||
		!strings.Contains(out, "PARSE FAILED (starts with { but is not one JSON object)") {
		t.Errorf("long line: exit %d, want 1 (cut, it is no longer JSON):\n%s", code, out)
	}
	write("  line_too_long: drop\n")
	out, code = runPodtail(t, long, "pipeline", "test", "-c", cfg, "--tenant", "acme", "--app", "a", "--json")
	var r testReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || r.Shipped || r.Dropped != "line_too_long" || r.DropBy != "limits" || len(r.Steps) != 0 {
		t.Errorf("long line dropped: exit %d, %v: %s", code, err, out)
	}
}
