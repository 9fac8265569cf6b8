package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// printLoop is a shell script printing prefix-out-1..n on stdout and
// prefix-err-1..n on stderr, with an optional pause (µs) between lines.
func printLoop(prefix string, n, pauseMicros int, stderr bool) string {
	body := fmt.Sprintf(`echo "%s-out-$i"`, prefix)
	if stderr {
		body += fmt.Sprintf(`; echo "%s-err-$i" >&2`, prefix)
	}
	if pauseMicros > 0 {
		body += fmt.Sprintf("; usleep %d", pauseMicros)
	}
	return fmt.Sprintf(`i=1; while [ $i -le %d ]; do %s; i=$((i+1)); done`, n, body)
}

func lines(ss []stream) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Lines...)
	}
	return out
}

// Two tenants' containers, 10,000 lines each on stdout and stderr: every
// line in Loki exactly once, under its own tenant and labels (and with its
// container, image and host as structured metadata), and neither tenant
// can see the other's lines.
func TestTwoTenantsEveryLineOnce(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	const n = 10000
	type app struct{ tenant, app, version string }
	apps := []app{{name("acme"), "shop", "v1"}, {name("globex"), "billing", "v15"}}
	start := time.Now()
	for _, a := range apps {
		runContainer(t, name("two", a.app), a.tenant, a.app, a.version, printLoop(a.app, n, 0, true))
	}
	for _, a := range apps {
		waitCount(t, a.tenant, fmt.Sprintf(`{tenant=%q, stream="stdout"}`, a.tenant), n, 90*time.Second)
		waitCount(t, a.tenant, fmt.Sprintf(`{tenant=%q, stream="stderr"}`, a.tenant), n, 30*time.Second)
	}
	took := time.Since(start)
	t.Logf("4 × %d lines in Loki %.2fs after the first podman run: %.0f lines/s", n, took.Seconds(), 4*n/took.Seconds())

	for _, a := range apps {
		for _, st := range []string{"stdout", "stderr"} {
			ss := query(t, a.tenant, fmt.Sprintf(`{tenant=%q, stream=%q}`, a.tenant, st))
			if len(ss) != 1 {
				t.Fatalf("%s %s: %d streams, want 1", a.tenant, st, len(ss))
			}
			// Loki's answer merges the entries' structured metadata into the
			// stream's labels: the source metadata is there beside them.
			hostname, _ := os.Hostname()
			want := map[string]string{"tenant": a.tenant, "application": a.app, "version": a.version, "stream": st,
				"container": name("two", a.app), "image": bed.image, "host": hostname}
			if fmt.Sprint(ss[0].Labels) != fmt.Sprint(want) {
				t.Errorf("labels %v, want %v", ss[0].Labels, want)
			}
			seqLines(t, ss[0].Lines, a.app+"-"+map[string]string{"stdout": "out", "stderr": "err"}[st]+"-", n)
			for i := 1; i < len(ss[0].Times); i++ {
				if ss[0].Times[i] <= ss[0].Times[i-1] {
					t.Fatalf("times not strictly increasing at %d", i)
				}
			}
		}
	}
	// Isolation: as tenant A, everything there is is A's; B's selector is empty.
	a, b := apps[0], apps[1]
	all := query(t, a.tenant, `{stream=~".+"}`)
	for _, s := range all {
		if s.Labels["tenant"] != a.tenant {
			t.Errorf("tenant %s sees stream %v", a.tenant, s.Labels)
		}
	}
	if got := len(lines(all)); got != 2*n {
		t.Errorf("tenant %s sees %d lines, want %d", a.tenant, got, 2*n)
	}
	if got := count(t, a.tenant, fmt.Sprintf(`{tenant=%q}`, b.tenant)); got != 0 {
		t.Errorf("tenant %s sees %d lines of tenant %s", a.tenant, got, b.tenant)
	}
}

// A container started while podtail runs has its first line queryable in
// Loki within 2 s of `podman run` returning.
func TestFirstLineWithinTwoSeconds(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	tenant := name("latency")
	var took []time.Duration
	for i := 0; i < 5; i++ {
		marker := fmt.Sprintf("first-line-%d", i)
		runContainer(t, name("lat", fmt.Sprint(i)), tenant, "lat", "v1", "echo "+marker+"; sleep 60")
		ran := time.Now()
		q := fmt.Sprintf(`{tenant=%q} |= %q`, tenant, marker)
		eventually(t, 10*time.Second, marker, func() bool { return count(t, tenant, q) == 1 })
		took = append(took, time.Since(ran))
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("podman run returned -> first line queryable: min %s, median %s, max %s", took[0], took[2], took[4])
	if took[4] > 2*time.Second {
		t.Fatalf("slowest first line took %s, want < 2s (all: %v)", took[4], took)
	}
}

// A container already running when podtail starts is collected from its
// first line, not from when podtail noticed it.
func TestExistingContainerFromItsStart(t *testing.T) {
	needBed(t)
	tenant := name("existing")
	runContainer(t, name("existing"), tenant, "old", "v1",
		printLoop("early", 50, 0, false)+"; "+printLoop("late", 30, 100000, false)+"; sleep 60")
	time.Sleep(1500 * time.Millisecond) // all of "early" and some of "late" are written before podtail starts
	startPodtail(t, podtailOpts{})
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), 80, 30*time.Second)
	ls := lines(query(t, tenant, fmt.Sprintf(`{tenant=%q} |= "early-"`, tenant)))
	seqLines(t, ls, "early-out-", 50)
}

// A container that prints 100 lines and exits at once: all 100 arrive.
func TestShortLivedContainer(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	tenant := name("short")
	runContainer(t, name("short"), tenant, "blink", "v1", printLoop("blink", 100, 0, false))
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), 100, 20*time.Second)
	seqLines(t, lines(query(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant))), "blink-out-", 100)
}

// The same with --rm, 5 times. Podman's file-backed event stream reaches
// podtail ~200 ms late (create: 226 ms measured) and inspect blocks on the
// container's lock until its removal deletes the log, so podtail starts a
// reader from the create event alone (default k8s-file path), which holds
// the log open before it is deleted.
func TestShortLivedRmContainer(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	for i := 0; i < 5; i++ {
		tenant := name("rm", fmt.Sprint(i))
		runContainer(t, name("rm", fmt.Sprint(i)), tenant, "blink", "v1", printLoop("blink", 100, 0, false), "--rm")
		waitCount(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), 100, 20*time.Second)
	}
}

// The Podman service stopped for 10 s and started again: podtail keeps
// running, reconnects (a container started afterwards is found), and nothing
// that running containers printed meanwhile is lost.
func TestPodmanServiceRestart(t *testing.T) {
	needBed(t)
	sock := filepath.Join(t.TempDir(), "podman.sock")
	svc, err := testbed.StartPodmanService(sock)
	if err != nil {
		t.Fatal(err)
	}
	p := startPodtail(t, podtailOpts{socket: "unix://" + sock})
	tenant := name("svcrestart")
	const n = 1000 // one line per 20 ms: ~25 s in all
	runContainer(t, name("ticker"), tenant, "ticker", "v1", printLoop("tick", n, 20000, false)+"; sleep 60")
	q := fmt.Sprintf(`{tenant=%q, application="ticker"}`, tenant)
	eventually(t, 10*time.Second, "first ticks", func() bool { return count(t, tenant, q) > 0 })

	svc.Stop()
	t.Logf("podman service stopped")
	time.Sleep(10 * time.Second)
	if c := count(t, tenant, q); c < 100 {
		t.Errorf("only %d ticks delivered while the service was down; reading should not depend on it", c)
	}
	svc, err = testbed.StartPodmanService(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	t.Logf("podman service started again")
	select {
	case <-p.done:
		t.Fatalf("podtail exited while the podman service was down:\n%s", tail(p.Log(), 30))
	default:
	}
	runContainer(t, name("after"), tenant, "after", "v1", printLoop("after", 10, 0, false))
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q, application="after"}`, tenant), 10, 20*time.Second)
	waitCount(t, tenant, q, n, 60*time.Second)
	seqLines(t, lines(query(t, tenant, q)), "tick-out-", n)
}

// podtail stopped with SIGTERM mid-stream and started again: nothing lost,
// nothing sent twice. Loki would hide an identical resend, so the test also
// counts what the second podtail sent: exactly the lines the first had not
// delivered, as told by its positions file.
func TestRestartNoLossNoDuplicates(t *testing.T) {
	needBed(t)
	dataDir := t.TempDir()
	p1 := startPodtail(t, podtailOpts{dataDir: dataDir})
	tenant := name("restart")
	const n = 3000
	id := runContainer(t, name("restart"), tenant, "steady", "v1", printLoop("steady", n, 2000, false)+"; sleep 60")
	q := fmt.Sprintf(`{tenant=%q}`, tenant)
	eventually(t, 20*time.Second, "some lines", func() bool { return count(t, tenant, q) >= 300 })
	p1.stop()
	delivered := linesBeforeOffset(t, id, dataDir)
	if delivered == 0 || delivered >= n {
		t.Fatalf("the first podtail delivered %d lines; the test wants to stop it mid-stream", delivered)
	}
	if got := count(t, tenant, q); got != delivered {
		t.Errorf("positions say %d lines delivered, Loki has %d", delivered, got)
	}

	p2 := startPodtail(t, podtailOpts{dataDir: dataDir})
	waitCount(t, tenant, q, n, 60*time.Second)
	seqLines(t, lines(query(t, tenant, q)), "steady-out-", n)
	eventually(t, 5*time.Second, "sent counter", func() bool {
		return p2.metric("podtail_loki_entries_sent_total", "tenant", tenant) >= float64(n-delivered)
	})
	if sent := p2.metric("podtail_loki_entries_sent_total", "tenant", tenant); sent != float64(n-delivered) {
		t.Fatalf("second podtail sent %.0f entries, want exactly %d (= %d - %d delivered before)", sent, n-delivered, n, delivered)
	}
	t.Logf("first run delivered %d, second %d: %d lines, each once", delivered, n-delivered, n)
}

// linesBeforeOffset counts the lines of container id that podtail's stored
// position says were delivered: before its offset in the k8s-file log, or up
// to its cursor in the journal.
func linesBeforeOffset(t *testing.T, id, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Positions map[string]struct {
			Path   string `json:"path"`
			Offset int64  `json:"offset"`
			Cursor string `json:"cursor"`
		} `json:"positions"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	pos, ok := f.Positions["container:"+id]
	if !ok {
		t.Fatalf("no position for container %s in %s", id, b)
	}
	if pos.Cursor != "" {
		return entriesUpToCursor(t, id, pos.Cursor)
	}
	log, err := os.ReadFile(pos.Path)
	if err != nil {
		t.Fatal(err)
	}
	if pos.Offset > int64(len(log)) {
		t.Fatalf("offset %d beyond the log's %d bytes", pos.Offset, len(log))
	}
	if pos.Offset > 0 && log[pos.Offset-1] != '\n' {
		t.Fatalf("offset %d is not at a line boundary", pos.Offset)
	}
	return strings.Count(string(log[:pos.Offset]), "\n")
}

// entriesUpToCursor counts container id's journal entries up to and
// including the one at cursor, as journalctl reads them: podtail's cursor
// must name an entry journalctl knows, by the same string.
func entriesUpToCursor(t *testing.T, id, cursor string) int {
	t.Helper()
	out, err := exec.Command("journalctl", "--no-pager", "-o", "json", "--output-fields=__CURSOR", "CONTAINER_ID_FULL="+id).Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	n := 0
	for line := range strings.Lines(string(out)) {
		var e struct {
			Cursor string `json:"__CURSOR"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("journalctl: %q: %v", line, err)
		}
		n++
		if e.Cursor == cursor {
			return n
		}
	}
	t.Fatalf("podtail's stored cursor %q is none of the container's %d journal entries", cursor, n)
	return 0
}

// `podtail events` shows a start and a died event, with the mapping, for a
// container started during the test, and says why an unlabelled one is not
// collected.
func TestEventsCLI(t *testing.T) {
	needBed(t)
	cmd := exec.Command(bed.podtail, "events", "--json", "--podman.socket", bed.socket)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(500 * time.Millisecond)
	tenant := name("events")
	id := runContainer(t, name("evt"), tenant, "evapp", "v7", "echo hi; sleep 1")
	anon := podman(t, "run", "-d", "--name", name("anon"), bed.image, "sh", "-c", "sleep 1")
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", name("anon")).Run() })
	// Labelled, but Podman keeps none of its output: podtail says why.
	mute := podman(t, "run", "-d", "--log-driver", "none", "--name", name("mute"), "--label", "tenant="+tenant, bed.image, "sh", "-c", "sleep 1")
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", name("mute")).Run() })

	type decision struct {
		Action, ID, Tenant, Application, Version, Reason string
		LogDriver                                        string `json:"log_driver"`
		Output                                           string
		Collect                                          bool
		Sources                                          []string
	}
	seen := map[string]decision{}
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() && (seen[id+"start"].ID == "" || seen[id+"died"].ID == "" || seen[anon+"start"].ID == "" || seen[mute+"start"].ID == "") {
		var d decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		seen[d.ID+d.Action] = d
	}
	for _, action := range []string{"start", "died"} {
		d, ok := seen[id+action]
		if !ok {
			t.Fatalf("no %s event for %s; saw %v", action, id, seen)
		}
		if !d.Collect || d.Tenant != tenant || d.Application != "evapp" || d.Version != "v7" || len(d.Sources) == 0 {
			t.Errorf("%s: decision %+v", action, d)
		}
		// Where its output is read from, by the host's log driver.
		wantOutput := "journal CONTAINER_ID_FULL=" + id
		if bedLogDriver(t) == "k8s-file" {
			wantOutput = "/ctr.log"
		}
		if d.LogDriver != bedLogDriver(t) || !strings.Contains(d.Output, wantOutput) {
			t.Errorf("%s: log driver %q, output %q; want %q and %q", action, d.LogDriver, d.Output, bedLogDriver(t), wantOutput)
		}
	}
	if d := seen[mute+"start"]; d.Collect || d.LogDriver != "none" || !strings.Contains(d.Reason, "keeps no output") {
		t.Errorf("log driver none: decision %+v, want not collected, saying Podman keeps no output", d)
	}
	if d := seen[anon+"start"]; d.Collect || !strings.Contains(d.Reason, `no "tenant" label`) {
		t.Errorf("unlabelled container: decision %+v, want not collected for lack of a tenant label", d)
	}

	// The human-readable forms.
	table, err := exec.Command(bed.podtail, "targets", "--podman.socket", bed.socket).CombinedOutput()
	if err != nil {
		t.Fatalf("podtail targets: %v\n%s", err, table)
	}
	for _, want := range []string{name("evt"), "collect tenant=" + tenant + " application=evapp version=v7", name("anon"), `skip: no "tenant" label`,
		"LOG DRIVER", bedLogDriver(t) + "  ", `skip: log driver "none"`} {
		if !strings.Contains(string(table), want) {
			t.Errorf("podtail targets lacks %q:\n%s", want, table)
		}
	}
}

// Bad input at start-up gives one clear line and, where podtail cannot go
// on, a non-zero exit.
func TestBadInput(t *testing.T) {
	needBed(t)
	runBad := func(t *testing.T, args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(bed.podtail, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, strings.TrimSpace(stderr.String())
	}
	oneLine := func(t *testing.T, msg string, wants ...string) {
		t.Helper()
		if strings.Count(msg, "\n") != 0 {
			t.Errorf("error is not one line:\n%s", msg)
		}
		for _, w := range wants {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q lacks %q", msg, w)
			}
		}
	}
	t.Run("wrong socket", func(t *testing.T) {
		code, msg := runBad(t, "run", "--podman.socket", "unix:///nonexistent/podman.sock", "--data_dir", t.TempDir())
		if code == 0 {
			t.Fatalf("exit 0")
		}
		oneLine(t, msg, "unix:///nonexistent/podman.sock", "no such file")
	})
	t.Run("malformed config", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "bad.yaml")
		_ = os.WriteFile(f, []byte("loki:\n  ulr: http://x\n  batch_wait: soon\n"), 0o600)
		code, msg := runBad(t, "run", "--config", f)
		if code != 2 {
			t.Fatalf("exit %d, want 2: %s", code, msg)
		}
		oneLine(t, msg, f, "loki.ulr: unknown key", "did you mean loki.url")
		code, msg = runBad(t, "config", "check", "--config", f)
		if code != 2 {
			t.Fatalf("config check: exit %d, want 2", code)
		}
		oneLine(t, msg, "loki.ulr")
	})
	t.Run("unreachable loki", func(t *testing.T) {
		// Loki may just start later, so podtail goes on collecting (lines
		// wait on disk) but says so at once, in one line.
		dataDir := t.TempDir()
		cfg := filepath.Join(t.TempDir(), "c.yaml")
		_ = os.WriteFile(cfg, []byte(fmt.Sprintf("loki:\n  url: http://127.0.0.1:1\ndata_dir: %s\nserver:\n  listen: 127.0.0.1:%d\npodman:\n  socket: %s\n", dataDir, testbed.FreePort(), bed.socket)), 0o600)
		cmd := exec.Command(bed.podtail, "run", "--config", cfg)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() }()
		eventually(t, 10*time.Second, "the unreachable-Loki line", func() bool {
			return strings.Contains(stderr.String(), "loki.url http://127.0.0.1:1 is unreachable")
		})
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("podtail is gone (%v): %s", err, stderr.String())
		}
	})
}
