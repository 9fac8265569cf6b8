package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// buildSidecarImage builds the shipped Containerfile (FROM scratch) with
// `podman build` from a static podtail binary built here, the way
// contrib/README.md says, and removes the image when the test ends.
func buildSidecarImage(t *testing.T) string {
	t.Helper()
	ctx := t.TempDir()
	build := exec.Command("go", "build", "-ldflags", "-s -w", "-o", filepath.Join(ctx, "podtail"), "../cmd/podtail")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(ctx, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile("../config/podtail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "config", "podtail.yaml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	containerfile, err := filepath.Abs("../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	img := "localhost/podtail-sidecar-e2e:" + bed.runID
	start := time.Now()
	podman(t, "build", "-q", "-t", img, "-f", containerfile, ctx)
	t.Cleanup(func() { _ = exec.Command("podman", "rmi", "-f", img).Run() })
	bin, err := os.Stat(filepath.Join(ctx, "podtail"))
	if err != nil {
		t.Fatal(err)
	}
	size, _ := strconv.ParseInt(podman(t, "image", "inspect", "--format", "{{.Size}}", img), 10, 64)
	t.Logf("image %s built in %s: %.1f MB (the binary, -s -w: %.1f MB)", img, time.Since(start).Round(time.Millisecond),
		float64(size)/1e6, float64(bin.Size())/1e6)
	if size == 0 || size > bin.Size()+1<<20 {
		t.Errorf("image is %d bytes, binary %d: the image should be the binary and its config", size, bin.Size())
	}
	if out := podman(t, "run", "--rm", img, "version"); out == "" {
		t.Errorf("podman run %s version printed nothing", img)
	}
	return img
}

// sidecar is podtail running in its image as a container beside the apps.
type sidecar struct {
	t      *testing.T
	cname  string
	listen string
}

type sidecarOpts struct {
	socket  string   // host path of the Podman socket; default the test bed's
	dataDir string   // host directory for /var/lib/podtail
	logDirs []string // the apps' host log directories, mounted at the same paths
	args    []string // more `podman run` options (user, groups)
	noWait  bool     // do not wait for /ready
}

// runSidecar starts the image as the contrib/README.md's rootful command
// does: host network (Loki on 127.0.0.1), the socket, the containers'
// k8s-file logs and the apps' log directories mounted read-only at the paths
// Podman reports, a read-only root, every capability dropped but
// DAC_READ_SEARCH, no new privileges.
func runSidecar(t *testing.T, img, cname string, o sidecarOpts) *sidecar {
	t.Helper()
	if o.socket == "" {
		o.socket = strings.TrimPrefix(bed.socket, "unix://")
	}
	storage := podman(t, "info", "--format", "{{.Store.GraphRoot}}/{{.Store.GraphDriverName}}-containers")
	s := &sidecar{t: t, cname: cname, listen: fmt.Sprintf("127.0.0.1:%d", testbed.FreePort())}
	args := []string{"run", "-d", "--name", cname, "--network", "host",
		"--cap-drop", "all", "--cap-add", "DAC_READ_SEARCH", "--read-only",
		"--security-opt", "no-new-privileges", "--security-opt", "label=disable",
		"-v", o.socket + ":/run/podman/podman.sock:ro",
		"-v", storage + ":" + storage + ":ro",
		"-v", o.dataDir + ":/var/lib/podtail",
		"-e", "PODTAIL_PODMAN_SOCKET=unix:///run/podman/podman.sock",
		"-e", "PODTAIL_PODMAN_RECONCILE_INTERVAL=2s",
		"-e", "PODTAIL_LOKI_URL=" + bed.lokiURL,
		"-e", "PODTAIL_LOKI_BATCH_WAIT=200ms",
		"-e", "PODTAIL_SERVER_LISTEN=" + s.listen,
	}
	for _, d := range o.logDirs {
		args = append(args, "-v", d+":"+d+":ro")
	}
	// The journal, read-only, as contrib's units mount it: journald
	// containers' output is only there.
	for _, d := range []string{"/var/log/journal", "/run/log/journal"} {
		if _, err := os.Stat(d); err == nil {
			args = append(args, "-v", d+":"+d+":ro")
		}
	}
	args = append(args, o.args...)
	args = append(args, img)
	podman(t, args...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("podman", "logs", cname).CombinedOutput()
			t.Logf("sidecar %s log:\n%s", cname, tail(string(out), 60))
		}
		_ = exec.Command("podman", "rm", "-f", "-t", "0", cname).Run()
	})
	if !o.noWait {
		if err := testbed.WaitHTTP("http://"+s.listen+"/ready", 30*time.Second); err != nil {
			t.Fatalf("sidecar not ready: %v\n%s", err, s.logs())
		}
	}
	return s
}

func (s *sidecar) logs() string {
	out, _ := exec.Command("podman", "logs", s.cname).CombinedOutput()
	return string(out)
}

// metric reads the sidecar's /metrics (podtailProc's parser; only its
// listen address is used).
func (s *sidecar) metric(name string, labels ...string) float64 {
	return (&podtailProc{listen: s.listen}).metric(name, labels...)
}

// stop is `podman stop` (SIGTERM, 30 s like the quadlet's StopTimeout) and
// checks that podtail exited 0, having saved its positions.
func (s *sidecar) stop(dataDir string) {
	s.t.Helper()
	podman(s.t, "stop", "-t", "30", s.cname)
	// The spool cannot hard-link logs into data_dir, which a container has
	// on another mount than the storage (it copies on removal instead): say
	// what podtail made of that.
	for _, l := range strings.Split(s.logs(), "\n") {
		if strings.Contains(l, "spool") {
			s.t.Logf("sidecar log: %s", l)
		}
	}
	if code := podman(s.t, "inspect", "--format", "{{.State.ExitCode}}", s.cname); code != "0" {
		s.t.Fatalf("sidecar exited %s after SIGTERM:\n%s", code, tail(s.logs(), 30))
	}
	if _, err := os.Stat(filepath.Join(dataDir, "positions.json")); err != nil {
		s.t.Errorf("no positions after a clean stop: %v", err)
	}
}

// echoScript prints prefix1 .. prefixN on stdout, then idles.
func echoScript(prefix string, n int) string {
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); echo "%s$i"; done; sleep 300`, n, prefix)
}

// The image as users deploy it: built from the Containerfile with podman
// build, run as a sidecar container with the socket and log roots mounted,
// as root with one capability (the documented command) and as a non-root
// user.
func TestSidecar(t *testing.T) {
	needBed(t)
	img := buildSidecarImage(t)
	t.Run("root", func(t *testing.T) { testSidecarRoot(t, img) })
	t.Run("nonroot", func(t *testing.T) { testSidecarNonRoot(t, img) })
}

// The sidecar collects two tenants' container output (one container older
// than the sidecar) and their zap + lumberjack files (rotating) into Loki,
// each tenant under its own X-Scope-OrgID, and stops cleanly on podman stop.
func testSidecarRoot(t *testing.T, img string) {
	tenantA, tenantB := name("sidea"), name("sideb")
	const nPre, nOut, nZapA, nZapB = 500, 1000, 20000, 5000

	runContainer(t, name("side", "pre"), tenantA, "web", "v1", echoScript("pre-", nPre))
	logsA, logsB := appDir(t, tenantA, "test777"), appDir(t, tenantB, "orders")
	dataDir := t.TempDir()
	sc := runSidecar(t, img, name("sidecar"), sidecarOpts{dataDir: dataDir, logDirs: []string{logsA, logsB}})

	runZapApp(t, name("side", "zapa"), tenantA, "test777", "v15", logsA, fmt.Sprintf("-n %d -hold 5m", nZapA))
	runZapApp(t, name("side", "zapb"), tenantB, "orders", "v2", logsB, fmt.Sprintf("-n %d -rate 5000 -hold 5m", nZapB))
	runContainer(t, name("side", "out"), tenantB, "web", "v3", echoScript("out-", nOut))

	preSel := fmt.Sprintf(`{tenant=%q, application="web", version="v1", stream="stdout"}`, tenantA)
	outSel := fmt.Sprintf(`{tenant=%q, application="web", version="v3", stream="stdout"}`, tenantB)
	fileA := fmt.Sprintf(`{tenant=%q, application="test777", version="v15", stream="file"}`, tenantA)
	fileB := fmt.Sprintf(`{tenant=%q, application="orders", version="v2", stream="file"}`, tenantB)
	waitCount(t, tenantA, preSel, nPre, time.Minute)
	waitCount(t, tenantB, outSel, nOut, time.Minute)
	waitCount(t, tenantA, fileA, nZapA, 2*time.Minute)
	waitCount(t, tenantB, fileB, nZapB, time.Minute)
	seqLines(t, lines(query(t, tenantA, preSel)), "pre-", nPre)
	seqLines(t, lines(query(t, tenantB, outSel)), "out-", nOut)
	for _, c := range []struct {
		tenant, sel, app, version string
		n                         int
	}{{tenantA, fileA, "test777", "v15", nZapA}, {tenantB, fileB, "orders", "v2", nZapB}} {
		ss, err := testbed.QueryAll(bed.lokiURL, c.tenant, c.sel)
		if err != nil {
			t.Fatal(err)
		}
		checkZapLines(t, ss, c.n, map[string]string{"tenant": c.tenant, "application": c.app, "version": c.version, "stream": "file"})
	}
	// The zap apps' own stdout ("writing", "wrote") is container output.
	waitCount(t, tenantA, fmt.Sprintf(`{tenant=%q, application="test777", stream="stdout"}`, tenantA), 2, 30*time.Second)

	// Each tenant sees only its own lines.
	if n := lokiCount(t, tenantB, fmt.Sprintf(`{tenant=%q}`, tenantA)); n != 0 {
		t.Errorf("tenant %s sees %d of %s's entries", tenantB, n, tenantA)
	}
	if n := lokiCount(t, tenantA, fmt.Sprintf(`{tenant=%q}`, tenantB)); n != 0 {
		t.Errorf("tenant %s sees %d of %s's entries", tenantA, n, tenantB)
	}
	rot := sc.metric("podtail_file_rotations_total", "tenant", tenantA)
	t.Logf("sidecar: %d + %d container lines, %d + %d file lines in Loki, each once; %.0f rotations followed for %s",
		nPre, nOut, nZapA, nZapB, rot, tenantA)
	if rot < 2 {
		t.Errorf("%.0f rotations of %s's file; the test wants the sidecar to follow at least 2", rot, tenantA)
	}
	sc.stop(dataDir)
}

// The sidecar as a non-root user (65534). The rootful socket is root's and
// 0600 (podman system service) or 0660 root:root (podman.socket), so a
// non-root podtail can use it only through a group the host grants it
// (SocketGroup= in podman.socket): without one it fails at start, saying
// so; with one it collects, reading the root-owned 0600 ctr.log and app
// files through CAP_DAC_READ_SEARCH, which Podman puts in the ambient set
// for a non-root user.
func testSidecarNonRoot(t *testing.T, img string) {
	// A Podman service of this test's own, whose socket it may regroup.
	sock := filepath.Join(t.TempDir(), "podman.sock")
	svc, err := testbed.StartPodmanService(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	const gid = 23456 // stands for the group podman.socket's SocketGroup= names
	nonRoot := []string{"--user", "65534:65534"}
	dataDir := t.TempDir()
	if err := os.Chown(dataDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}

	// The socket as Podman makes it.
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	denied := runSidecar(t, img, name("sidecar", "denied"), sidecarOpts{socket: sock, dataDir: dataDir, args: nonRoot, noWait: true})
	var state string
	eventually(t, 30*time.Second, "the non-root sidecar without the socket's group to exit", func() bool {
		state = podman(t, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", denied.cname)
		return strings.HasPrefix(state, "exited")
	})
	log := denied.logs()
	t.Logf("non-root, socket %v: %s; podtail said: %s", fi.Mode().Perm(), state, strings.TrimSpace(tail(log, 1)))
	if state != "exited 1" || !strings.Contains(log, "permission denied") || !strings.Contains(log, "podman socket") {
		t.Fatalf("want exit 1 naming the podman socket and permission denied; got %q:\n%s", state, log)
	}

	// The socket shared with a group the sidecar's user is in.
	if err := os.Chown(sock, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o660); err != nil {
		t.Fatal(err)
	}
	tenant := name("sidenr")
	logs := appDir(t, tenant, "billing")
	sc := runSidecar(t, img, name("sidecar", "nonroot"), sidecarOpts{socket: sock, dataDir: dataDir, logDirs: []string{logs},
		args: append(nonRoot, "--group-add", strconv.Itoa(gid))})
	if id := podman(t, "exec", sc.cname, "/podtail", "version"); id == "" {
		t.Errorf("podtail version in the sidecar printed nothing")
	}
	const nOut, nZap = 300, 3000
	runContainer(t, name("sidenr", "out"), tenant, "web", "v1", echoScript("nr-", nOut))
	runZapApp(t, name("sidenr", "zap"), tenant, "billing", "v7", logs, fmt.Sprintf("-n %d -hold 5m", nZap))
	outSel := fmt.Sprintf(`{tenant=%q, application="web", stream="stdout"}`, tenant)
	fileSel := fmt.Sprintf(`{tenant=%q, application="billing", version="v7", stream="file"}`, tenant)
	waitCount(t, tenant, outSel, nOut, time.Minute)
	waitCount(t, tenant, fileSel, nZap, time.Minute)
	seqLines(t, lines(query(t, tenant, outSel)), "nr-", nOut)
	ss, err := testbed.QueryAll(bed.lokiURL, tenant, fileSel)
	if err != nil {
		t.Fatal(err)
	}
	checkZapLines(t, ss, nZap, map[string]string{"tenant": tenant, "version": "v7"})
	if refused := sc.metric("podtail_file_refused_total", "tenant", tenant); refused != 0 {
		t.Errorf("%.0f files refused", refused)
	}
	// What uid 65534 could not read without the capability: the container's
	// log, or the journal file its output went to (journald: no log path).
	ctrLog := podman(t, "inspect", "--format", "{{.HostConfig.LogConfig.Path}}", name("sidenr", "out"))
	if ctrLog == "" {
		journals, _ := filepath.Glob("/run/log/journal/*/system.journal")
		if len(journals) == 0 {
			t.Fatal("the container has no log path, and there is no /run/log/journal/*/system.journal")
		}
		ctrLog = journals[0]
	}
	var modes []string
	for _, f := range []string{ctrLog, filepath.Join(logs, tenant+"_billing_v7.log")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		modes = append(modes, fmt.Sprintf("%s %v %d:%d", filepath.Base(f), fi.Mode().Perm(), st.Uid, st.Gid))
		if fi.Mode().Perm()&0o004 != 0 && st.Uid != 65534 {
			t.Logf("%s is world-readable: the capability was not needed for it", f)
		}
	}
	t.Logf("non-root sidecar (uid 65534, group %d on the socket, CAP_DAC_READ_SEARCH): %d container lines and %d file lines, each once; read %s",
		gid, nOut, nZap, strings.Join(modes, ", "))
	sc.stop(dataDir)
}
