package e2e

// Containers as users' hosts have them: restarted by hand or by a restart
// policy, logging to a path of their own, on vfs storage, and (in the
// Podman 5 + journald profile) through journald's rate limit. Each runs in
// both host profiles unless it says otherwise.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// Every run of a restarted container is read once: `podman restart` of a
// running container, and a --restart=on-failure:3 container that exits
// non-zero twice before it succeeds (Podman restarts it itself). Each run
// prints lines numbered by its run, counted in a file on a mounted volume.
func TestContainerRestartedEveryRunOnce(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	tenant := name("restarts")
	const n = 200
	// run counts its own runs in /state/runs and prints n lines tagged with
	// the run; exitFor is the exit status of each run (the last: 0).
	script := func(prefix, tail string) string {
		return `r=$(( $(cat /state/runs 2>/dev/null || echo 0) + 1 )); echo $r > /state/runs; ` +
			printLoop(prefix+"-run$r", n, 0, true) + "; " + tail
	}

	manual := t.TempDir()
	runContainer(t, name("rs-manual"), tenant, "manual", "v1", script("manual", "sleep 600"), "-v", manual+":/state")
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q, application="manual"}`, tenant), 2*n, 30*time.Second)
	podman(t, "restart", "-t", "0", name("rs-manual"))
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q, application="manual"}`, tenant), 4*n, 30*time.Second)

	policy := t.TempDir()
	runContainer(t, name("rs-policy"), tenant, "policy", "v1",
		script("policy", `[ "$r" -ge 3 ] && exit 0; exit 1`), "-v", policy+":/state", "--restart=on-failure:3")
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q, application="policy"}`, tenant), 6*n, 60*time.Second)
	eventually(t, 30*time.Second, "the policy container to stop after its third run", func() bool {
		return podman(t, "inspect", "--format", "{{.State.Status}}", name("rs-policy")) == "exited"
	})
	if runs, _ := os.ReadFile(filepath.Join(policy, "runs")); strings.TrimSpace(string(runs)) != "3" {
		t.Fatalf("the policy container ran %q times, want 3", runs)
	}
	time.Sleep(2 * time.Second) // anything read late or twice has arrived by now

	for app, runs := range map[string]int{"manual": 2, "policy": 3} {
		for _, st := range []string{"stdout", "stderr"} {
			all := lines(query(t, tenant, fmt.Sprintf(`{tenant=%q, application=%q, stream=%q}`, tenant, app, st)))
			if len(all) != runs*n {
				t.Errorf("%s %s: %d lines, want %d (%d runs × %d)", app, st, len(all), runs*n, runs, n)
			}
			for r := 1; r <= runs; r++ {
				prefix := fmt.Sprintf("%s-run%d-%s-", app, r, map[string]string{"stdout": "out", "stderr": "err"}[st])
				var of []string
				for _, l := range all {
					if strings.HasPrefix(l, prefix) {
						of = append(of, l)
					}
				}
				seqLines(t, of, prefix, n)
			}
		}
	}
}

// A container created while podtail runs with a log path of its own
// (--log-driver k8s-file --log-opt path=): discovery's first guess, the
// service's default (path or journald), is corrected by inspect, and every
// line is read from there. Podman 5.7 and later also take a directory, and
// write <dir>/<id>/ctr.log: inspect says so, and that is read too.
func TestLogOptPathWhileRunning(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	tenant := name("logpath")
	paths := map[string]string{"file": filepath.Join(t.TempDir(), "custom.log")}
	if podmanAtLeast(t, 5, 7) {
		paths["dir"] = t.TempDir()
	}
	const n = 2000
	for form, path := range paths {
		id := runContainer(t, name("logpath", form), tenant, form, "v1", printLoop(form, n, 0, false)+"; sleep 600",
			"--log-driver", "k8s-file", "--log-opt", "path="+path)
		sel := fmt.Sprintf(`{tenant=%q, application=%q}`, tenant, form)
		waitCount(t, tenant, sel, n, 30*time.Second)
		seqLines(t, lines(query(t, tenant, sel)), form+"-out-", n)
		t.Logf("--log-opt path=%s (%s): inspect says %s", path, form,
			podman(t, "inspect", "--format", "{{.HostConfig.LogConfig.Path}}", id))
	}
}

// podmanAtLeast says whether the test bed's Podman is major.minor or later.
func podmanAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var ma, mi int
	v := podman(t, "version", "--format", "{{.Client.Version}}")
	if _, err := fmt.Sscanf(v, "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("podman version %q: %v", v, err)
	}
	return ma > major || ma == major && mi >= minor
}

// A Podman service on vfs storage (common for rootless Podman, a second
// storage root here): its containers are found and read, short-lived --rm
// ones too, from vfs-containers rather than overlay-containers.
func TestVfsStorageRoot(t *testing.T) {
	needBed(t)
	root, run := t.TempDir(), t.TempDir()
	vfs := func(args ...string) []string {
		return append([]string{"--root", root, "--runroot", run, "--storage-driver", "vfs"}, args...)
	}
	vfsPodman := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("podman", vfs(args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// The test image, into the vfs store: saved from the shared store.
	archive := filepath.Join(t.TempDir(), "image.tar")
	podman(t, "save", "-o", archive, bed.image)
	vfsPodman("load", "-i", archive)

	sock := filepath.Join(t.TempDir(), "vfs.sock")
	svc, err := testbed.StartPodmanServiceArgs(sock, vfs()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	if got := vfsPodman("info", "--format", "{{.Store.GraphDriverName}}"); got != "vfs" {
		t.Fatalf("storage driver %q, want vfs", got)
	}
	startPodtail(t, podtailOpts{socket: "unix://" + sock})
	tenant := name("vfs")
	const n = 500
	for i, extra := range [][]string{{"-d"}, {"--rm"}} {
		cname := name("vfs", strconv.Itoa(i))
		args := append([]string{"run"}, extra...)
		args = append(args, "--name", cname, "--label", "tenant="+tenant, "--label", "app=vfs"+strconv.Itoa(i),
			bed.image, "sh", "-c", printLoop("vfs"+strconv.Itoa(i), n, 0, false))
		vfsPodman(args...)
		t.Cleanup(func() { _ = exec.Command("podman", vfs("rm", "-f", "-t", "0", cname)...).Run() })
	}
	for i := range 2 {
		sel := fmt.Sprintf(`{tenant=%q, application="vfs%d"}`, tenant, i)
		waitCount(t, tenant, sel, n, 30*time.Second)
		seqLines(t, lines(query(t, tenant, sel)), fmt.Sprintf("vfs%d-out-", i), n)
	}
}

// 100,000 lines at full speed from one journald container, under journald's
// default rate limit: podtail ships every line the journal holds for it, and
// the test reports how many journald itself suppressed.
func TestJournalRateLimit(t *testing.T) {
	needBed(t)
	if bedLogDriver(t) != "journald" {
		t.Skip("the journald profile's test: this profile's containers log to k8s-file")
	}
	startPodtail(t, podtailOpts{})
	tenant := name("flood")
	const n = 100000
	id := runContainer(t, name("flood"), tenant, "flood", "v1", printLoop("flood", n, 0, false))
	eventually(t, 120*time.Second, "the flood container to exit", func() bool {
		return podman(t, "inspect", "--format", "{{.State.Status}}", id) == "exited"
	})
	out, err := exec.Command("journalctl", "--no-pager", "-o", "cat", "CONTAINER_ID_FULL="+id).Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}
	held := strings.Count(string(out), "flood-out-")
	if held == 0 {
		t.Fatal("the journal holds none of the container's lines")
	}
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), held, 120*time.Second)
	time.Sleep(2 * time.Second)
	if got := count(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant)); got != held {
		t.Errorf("Loki holds %d lines, the journal %d", got, held)
	}
	supp, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "--since", "-10min", "-g", "Suppressed").Output()
	t.Logf("%d lines written, %d in the journal (journald suppressed %d), %d in Loki; journald said: %s",
		n, held, n-held, held, strings.TrimSpace(tail(string(supp), 3)))
}

// A line longer than conmon's buffer reaches Loki as one entry: conmon splits
// it (P lines in a k8s-file log, CONTAINER_PARTIAL_MESSAGE entries in the
// journal) and podtail joins the parts, on stdout and stderr alike, without
// the newline conmon adds to each journal entry.
func TestLongLineJoined(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	tenant := name("longline")
	const width = 30000
	runContainer(t, name("longline"), tenant, "long", "v1",
		fmt.Sprintf(`echo before; printf 'a%%0%dd\n' 0; printf 'e%%0%dd\n' 0 >&2; echo after`, width, width))
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), 4, 30*time.Second)
	time.Sleep(time.Second)
	want := map[string][]string{
		"stdout": {"before", "a" + strings.Repeat("0", width), "after"},
		"stderr": {"e" + strings.Repeat("0", width)},
	}
	for st, w := range want {
		got := lines(query(t, tenant, fmt.Sprintf(`{tenant=%q, stream=%q}`, tenant, st)))
		if len(got) != len(w) {
			t.Errorf("%s: %d entries, want %d", st, len(got), len(w))
			continue
		}
		for i := range w {
			if got[i] != w[i] {
				t.Errorf("%s entry %d: %d bytes %.20q…, want %d bytes %.20q…", st, i, len(got[i]), got[i], len(w[i]), w[i])
			}
		}
	}
}

// A container whose log driver is not the host's default is read where its
// output goes: journald on the k8s-file host (Podman 4.3.1's conmon writes
// the journal too), k8s-file on the journald host; --rm or not, every line
// once on its stream.
func TestContainerOfTheOtherLogDriver(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	other := map[string]string{"k8s-file": "journald", "journald": "k8s-file"}[bedLogDriver(t)]
	tenant := name("otherdriver")
	const n = 1000
	runContainer(t, name("otherdriver"), tenant, "kept", "v1", printLoop("kept", n, 0, true), "--log-driver", other)
	args := []string{"run", "--rm", "--name", name("otherdriver-rm"), "--log-driver", other,
		"--label", "tenant=" + tenant, "--label", "app=rm", bed.image, "sh", "-c", printLoop("rm", n, 0, true)}
	podman(t, args...)
	for _, app := range []string{"kept", "rm"} {
		for st, tag := range map[string]string{"stdout": "out", "stderr": "err"} {
			sel := fmt.Sprintf(`{tenant=%q, application=%q, stream=%q}`, tenant, app, st)
			waitCount(t, tenant, sel, n, 30*time.Second)
			seqLines(t, lines(query(t, tenant, sel)), app+"-"+tag+"-", n)
		}
	}
	t.Logf("log driver %s on a %s host: 2 containers × 2 streams × %d lines, each once", other, bedLogDriver(t), n)
}

// Journal files vacuumed while podtail is down, holding lines it had not
// read: those are lost (journald deleted them), counted and logged, and
// podtail goes on with what the journal still holds; nothing stalls and
// nothing is sent twice.
func TestJournalVacuumedWhilePodtailDown(t *testing.T) {
	needBed(t)
	state := t.TempDir()
	tenant := name("vacuum")
	// Prints a batch, then the next one each time the test says go.
	script := printLoop("a", 100, 0, false) + "; until [ -e /state/b ]; do usleep 50000; done; " +
		printLoop("b", 100, 0, false) + "; until [ -e /state/c ]; do usleep 50000; done; " +
		printLoop("c", 100, 0, false) + "; sleep 600"
	runContainer(t, name("vacuum"), tenant, "vac", "v1", script, "-v", state+":/state", "--log-driver", "journald")
	dataDir := t.TempDir()
	p1 := startPodtail(t, podtailOpts{dataDir: dataDir})
	sel := fmt.Sprintf(`{tenant=%q}`, tenant)
	waitCount(t, tenant, sel, 100, 30*time.Second)
	p1.stop()

	touch := func(name string) {
		if err := os.WriteFile(filepath.Join(state, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	touch("b")
	eventually(t, 10*time.Second, "the b lines in the journal", func() bool {
		out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-g", "^b-out-100$", "--since", "-5min").Output()
		return strings.Contains(string(out), "b-out-100")
	})
	// Archive the file holding them, and delete every archived file.
	for _, args := range [][]string{{"--rotate"}, {"--sync"}} {
		if out, err := exec.Command("journalctl", args...).CombinedOutput(); err != nil {
			t.Fatalf("journalctl %v: %v\n%s", args, err, out)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if out, err := exec.Command("journalctl", "--vacuum-time=1s").CombinedOutput(); err != nil {
		t.Fatalf("journalctl --vacuum-time: %v\n%s", err, out)
	} else {
		t.Logf("journalctl --vacuum-time=1s: %s", strings.TrimSpace(tail(string(out), 2)))
	}
	touch("c")

	p2 := startPodtail(t, podtailOpts{dataDir: dataDir})
	waitCount(t, tenant, sel, 200, 30*time.Second)
	time.Sleep(time.Second)
	seqLines(t, lines(query(t, tenant, fmt.Sprintf(`{tenant=%q} |= "a-out-"`, tenant))), "a-out-", 100)
	seqLines(t, lines(query(t, tenant, fmt.Sprintf(`{tenant=%q} |= "c-out-"`, tenant))), "c-out-", 100)
	if got := count(t, tenant, fmt.Sprintf(`{tenant=%q} |= "b-out-"`, tenant)); got != 0 {
		t.Errorf("%d b lines in Loki, though the journal lost them before podtail could read them", got)
	}
	lost := p2.metric("podtail_source_journal_entries_lost_total", "tenant", tenant)
	if lost < 100 {
		t.Errorf("podtail_source_journal_entries_lost_total = %.0f, want at least the 100 b lines", lost)
	}
	if !strings.Contains(p2.Log(), "vacuumed away") {
		t.Errorf("podtail did not log the loss:\n%s", tail(p2.Log(), 20))
	}
	t.Logf("after the vacuum: a and c lines each once, b lost; %.0f journal entries counted lost", lost)
}
