package e2e

import (
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// appDir makes the seed's layout for one app under a fresh root and returns
// its host logs directory.
func appDir(t *testing.T, user, app string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "namespace", user, app, "workplace", "logs")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runZapApp runs the zap + lumberjack app in a container of tenant/app/version
// whose logs directory is bind-mounted from the host, as on the platform.
//
// The app starts writing 1 s after its container starts. Podman's events
// reach podtail ~200 ms late (measured), and at full speed the app fills
// and rotates five 1 MB files within ~200 ms, lumberjack deleting the first
// backup by then: no event-driven collector can watch the directory before
// it hears of the container (README: known limits).
func runZapApp(t *testing.T, cname, tenant, app, version, logs, args string) string {
	t.Helper()
	file := fmt.Sprintf("/app/workplace/logs/%s_%s_%s.log", tenant, app, version)
	return runContainer(t, cname, tenant, app, version, "sleep 1; exec /zaplog -file "+file+" "+args,
		"-v", bed.zaplog+":/zaplog:ro", "-v", logs+":/app/workplace/logs")
}

func lokiCount(t *testing.T, tenant, selector string) int {
	t.Helper()
	n, err := testbed.Count(bed.lokiURL, tenant, selector)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitAcked waits until podtail has had want entries of tenant acknowledged
// by Loki, watching its own counter rather than querying Loki.
func waitAcked(t *testing.T, p *podtailProc, tenant string, want float64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%.0f entries of %s acknowledged", want, tenant), func() bool {
		return p.metric("podtail_loki_entries_sent_total", "tenant", tenant) >= want
	})
}

type zapLine struct {
	Level string      `json:"level"`
	TS    json.Number `json:"ts"`
	Msg   string      `json:"msg"`
	N     int         `json:"n"`
}

// zapTime turns zap's epoch-seconds float text into nanoseconds exactly.
func zapTime(ts json.Number) int64 {
	r, ok := new(big.Rat).SetString(string(ts))
	if !ok {
		return 0
	}
	r.Mul(r, big.NewRat(1e9, 1))
	return new(big.Int).Quo(r.Num(), r.Denom()).Int64()
}

// checkZapLines: n = 1..want each once, log_level as the line says, and the
// entry time the zap ts to the microsecond.
func checkZapLines(t *testing.T, ss []testbed.Stream, want int, labels map[string]string) {
	t.Helper()
	seen := make([]int, want+1)
	total, badLevel, badTime := 0, 0, 0
	for _, s := range ss {
		for k, v := range labels {
			if s.Labels[k] != v {
				t.Fatalf("stream %v: %s is not %q", s.Labels, k, v)
			}
		}
		for i, l := range s.Lines {
			var z zapLine
			if err := json.Unmarshal([]byte(l), &z); err != nil || z.N < 1 || z.N > want {
				t.Fatalf("not one of the app's lines: %q", l)
			}
			seen[z.N]++
			total++
			if s.Labels["log_level"] != z.Level {
				badLevel++
			}
			if d := s.Times[i] - zapTime(z.TS); d < -1000 || d > 1000 {
				badTime++
				if badTime == 1 {
					t.Errorf("line n=%d: Loki time %d, zap ts %s (%d ns apart)", z.N, s.Times[i], z.TS, d)
				}
			}
		}
	}
	missing, dup := 0, 0
	for i := 1; i <= want; i++ {
		if seen[i] == 0 {
			missing++
		} else if seen[i] > 1 {
			dup++
		}
	}
	if missing+dup+badLevel+badTime > 0 || total != want {
		t.Fatalf("%d entries for %d lines: %d missing, %d duplicated, %d with a wrong log_level, %d more than 1µs off the zap ts",
			total, want, missing, dup, badLevel, badTime)
	}
}

// The seed's app: zap + lumberjack (MaxSize 1 MB, gzip, 3 backups) writing
// 200,000 lines at full speed into its mounted logs directory. Every line is
// in Loki once, with log_level and the zap ts; the seed's LogQL examples
// answer; a second version's file of the same app appears under its own
// version within 2 s.
func TestZapLumberjackAppFiles(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "app log files are read the same whatever the log driver")
	p := startPodtail(t, podtailOpts{})
	tenant, app := name("beiluo"), "test777"
	logs := appDir(t, tenant, app)
	const n = 200000
	start := time.Now()
	runZapApp(t, name("zap", "v1"), tenant, app, "v1", logs, fmt.Sprintf("-n %d -hold 5m", n))
	fileSel := fmt.Sprintf(`{tenant=%q, application=%q, version="v1", stream="file"}`, tenant, app)
	waitAcked(t, p, tenant, n, 3*time.Minute) // + the app's two stdout lines, which may come later
	took := time.Since(start)
	waitCount(t, tenant, fileSel, n, 30*time.Second)
	ss, err := testbed.QueryAll(bed.lokiURL, tenant, fileSel)
	if err != nil {
		t.Fatal(err)
	}
	checkZapLines(t, ss, n, map[string]string{"tenant": tenant, "application": app, "version": "v1", "stream": "file"})
	rotations := p.metric("podtail_file_rotations_total", "tenant", tenant)
	t.Logf("%d lines in Loki %.1fs after podman run, 1 s of it the app's start pause (%.0f lines/s end to end); %.0f rotations followed, files opened: %.0f plain, %.0f gzip",
		n, took.Seconds(), n/took.Seconds(), rotations,
		p.metric("podtail_file_opened_total", "tenant", tenant, "kind", "plain"), p.metric("podtail_file_opened_total", "tenant", tenant, "kind", "gzip"))
	if rotations < 20 {
		t.Errorf("only %.0f rotations; the test wants at least 20", rotations)
	}

	// The seed's LogQL examples.
	if got := lokiCount(t, tenant, fmt.Sprintf(`{tenant=%q, stream="file"}`, tenant)); got != n {
		t.Errorf(`{tenant}: %d, want %d`, got, n)
	}
	if got := lokiCount(t, tenant, fmt.Sprintf(`{tenant=%q, application=%q, version="v1", stream="file"}`, tenant, app)); got != n {
		t.Errorf(`{tenant, application, version}: %d, want %d`, got, n)
	}
	if got := lokiCount(t, tenant, fmt.Sprintf(`{tenant=%q, log_level="error"}`, tenant)); got != n/10 {
		t.Errorf(`log_level="error": %d, want %d`, got, n/10)
	}
	formatted, err := testbed.QueryAll(bed.lokiURL, tenant, fmt.Sprintf(`{tenant=%q, log_level="error"} | json | line_format "{{.msg}}"`, tenant))
	if err != nil {
		t.Fatal(err)
	}
	msgs := lines(formatted)
	if len(msgs) != n/10 || msgs[0] != "request failed" {
		t.Errorf(`| json | line_format "{{.msg}}": %d lines, first %q`, len(msgs), msgs[0])
	}

	// A second version of the app writes its own file into the same directory.
	runZapApp(t, name("zap", "v2"), tenant, app, "v2", logs, "-n 1000 -rate 1000 -hold 5m")
	ran := time.Now()
	v2 := fmt.Sprintf(`{tenant=%q, application=%q, version="v2", stream="file"}`, tenant, app)
	eventually(t, 10*time.Second, "the v2 file's first line", func() bool { return lokiCount(t, tenant, v2) > 0 })
	pickup := time.Since(ran)
	t.Logf("new file's first line queryable %s after podman run (the app pauses 1 s before writing)", pickup.Round(time.Millisecond))
	if pickup > 2*time.Second {
		t.Errorf("a file created after start took %s to show up, want < 2s", pickup)
	}
	waitCount(t, tenant, v2, 1000, 30*time.Second)
	if got := lokiCount(t, tenant, fileSel); got != n {
		t.Errorf("v1 lines now %d, want %d", got, n)
	}
}

// podtail SIGKILLed while the app writes and rotates, and started again a
// while later: every line in Loki once, including those in files rotated and
// gzipped while podtail was down.
func TestFilesKilledAndRestarted(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "app log files are read the same whatever the log driver")
	dataDir := t.TempDir()
	p1 := startPodtail(t, podtailOpts{dataDir: dataDir})
	tenant, app := name("killed"), "orders"
	logs := appDir(t, tenant, app)
	const n = 40000 // 4,000 lines/s: a rotation every ~1.5 s
	runZapApp(t, name("kill", "v3"), tenant, app, "v3", logs, fmt.Sprintf("-n %d -rate 4000 -hold 5m", n))
	sel := fmt.Sprintf(`{tenant=%q, stream="file"}`, tenant)
	eventually(t, 20*time.Second, "some lines", func() bool { return lokiCount(t, tenant, sel) > 5000 })
	p1.signal(syscall.SIGKILL)
	<-p1.done
	killedAt := lokiCount(t, tenant, sel)
	time.Sleep(3 * time.Second) // the app rotates and gzips meanwhile
	p2 := startPodtail(t, podtailOpts{dataDir: dataDir})
	waitCount(t, tenant, sel, n, 2*time.Minute)
	ss, err := testbed.QueryAll(bed.lokiURL, tenant, sel)
	if err != nil {
		t.Fatal(err)
	}
	checkZapLines(t, ss, n, map[string]string{"version": "v3"})
	gz := p2.metric("podtail_file_opened_total", "tenant", tenant, "kind", "gzip") +
		p2.metric("podtail_file_opened_total", "tenant", tenant, "kind", "gzip-resumed")
	t.Logf("killed with %d lines in Loki; after restart %d lines, each once; %.0f gzip backups read by the second podtail", killedAt, n, gz)
	if gz < 1 {
		t.Errorf("the second podtail read no gzip backup; the test wants rotations while it was down")
	}
}

// Hostile bytes in a log file: malformed JSON, a 1 MB line, invalid UTF-8
// and NUL bytes are shipped (repaired or truncated, and counted); nothing
// stalls, and the next good line arrives.
func TestMalformedFileInput(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "app log files are read the same whatever the log driver")
	p := startPodtail(t, podtailOpts{})
	tenant, app := name("messy"), "legacy"
	logs := appDir(t, tenant, app)
	runContainer(t, name("messy"), tenant, app, "v9", "sleep 300", "-v", logs+":/app/workplace/logs")
	content := strings.Join([]string{
		`{"level":"info","ts":`,               // malformed JSON
		strings.Repeat("y", 1<<20),            // 1 MB
		"bad utf8: \xff\xfe\xfd end",          // invalid UTF-8
		"nul: a\x00b\x00c",                    // NUL bytes
		`{"level":"error","ts":1.5,"msg":"x"`, // malformed again
		`{"level":"warn","msg":"good line after the mess"}`,
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(logs, tenant+"_"+app+"_v9.log"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	sel := fmt.Sprintf(`{tenant=%q, stream="file"}`, tenant)
	waitCount(t, tenant, sel, 6, 20*time.Second)
	got := lines(query(t, tenant, sel))
	var long, repaired, nul, good bool
	for _, l := range got {
		switch {
		case strings.HasPrefix(l, "yyyy"):
			long = len(l) <= 256<<10 && strings.HasSuffix(l, "[truncated by podtail]")
		case strings.HasPrefix(l, "bad utf8"):
			repaired = strings.Contains(l, "\uFFFD")
		case strings.HasPrefix(l, "nul"):
			nul = strings.Contains(l, "\x00")
		case strings.Contains(l, "good line after the mess"):
			good = true
		}
	}
	if !long || !repaired || !nul || !good {
		t.Errorf("long truncated %v, utf8 repaired %v, NUL kept %v, good line %v; lines: %d", long, repaired, nul, good, len(got))
	}
	if lokiCount(t, tenant, fmt.Sprintf(`{tenant=%q, log_level="warn"}`, tenant)) != 1 {
		t.Errorf("the good zap line did not get log_level=warn")
	}
	if v := p.metric("podtail_file_lines_truncated_total", "tenant", tenant); v != 1 {
		t.Errorf("truncated lines counted %v, want 1", v)
	}
	if v := p.metric("podtail_pipeline_lines_utf8_repaired_total", "tenant", tenant); v != 1 {
		t.Errorf("repaired lines counted %v, want 1", v)
	}
}

// Three apps that each write 30,000 lines at full speed as soon as they
// are up (five 1 MB files rotated in ~200 ms, the first deleted by then):
// podtail watches a container's logs directory from its create event, so
// no file goes unseen once it knows of the container.
func TestBurstAtContainerStart(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "app log files are read the same whatever the log driver")
	p := startPodtail(t, podtailOpts{})
	tenant := name("burst")
	const n = 30000
	for i := 0; i < 3; i++ {
		app := fmt.Sprintf("burst%d", i)
		runZapApp(t, name("burst", app), tenant, app, "v1", appDir(t, tenant, app), fmt.Sprintf("-n %d", n))
	}
	waitAcked(t, p, tenant, 3*n, time.Minute)
	for i := 0; i < 3; i++ {
		sel := fmt.Sprintf(`{tenant=%q, application="burst%d", stream="file"}`, tenant, i)
		waitCount(t, tenant, sel, n, 30*time.Second)
	}
}
