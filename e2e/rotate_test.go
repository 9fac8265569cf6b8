package e2e

// Log directories beyond lumberjack's bind mounts: a named volume, and files
// rotated by Debian's logrotate (copytruncate and create modes, compressed).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// The seed's zap + lumberjack app logging into a named volume (`podman
// volume create`, mounted at /app/workplace/logs, read where Podman keeps it
// on the host, as the default files.mount_types has it): 10,000 lines at
// full speed, rotated and gzipped twice (lumberjack keeps 3 backups: none is
// deleted), every line in Loki once under the container's tenant and
// application and the version in the file's name. Runs in both profiles:
// the volume's host path comes from each Podman's inspect (and storage
// root).
func TestNamedVolumeLogDir(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{})
	tenant, vol := name("vol"), name("podtail-vol")
	podman(t, "volume", "create", vol)
	t.Cleanup(func() { _ = exec.Command("podman", "volume", "rm", "-f", vol).Run() }) // after the container's removal
	const n = 10000
	runContainer(t, name("vol"), tenant, "volapp", "v1",
		fmt.Sprintf("sleep 1; exec /zaplog -file /app/workplace/logs/%s_volapp_v2.log -n %d -hold 5m", tenant, n),
		"-v", bed.zaplog+":/zaplog:ro", "-v", vol+":/app/workplace/logs")
	sel := fmt.Sprintf(`{tenant=%q, stream="file"}`, tenant)
	waitCount(t, tenant, sel, n, 60*time.Second)
	ss, err := testbed.QueryAll(bed.lokiURL, tenant, sel)
	if err != nil {
		t.Fatal(err)
	}
	checkZapLines(t, ss, n, map[string]string{"tenant": tenant, "application": "volapp", "version": "v2", "stream": "file"})
	t.Logf("volume %s at %s: %d lines once", vol, podman(t, "volume", "inspect", "--format", "{{.Mountpoint}}", vol), n)
}

// logrotated is a log file an app appends zap lines to and Debian's
// logrotate rotates with a configuration and state file of its own.
type logrotated struct {
	t                 *testing.T
	path, conf, state string
	reopen            bool // create mode: the app opens the new file after a rotation
	f                 *os.File
	n                 int // lines written
	rotated           time.Time
}

func newLogrotated(t *testing.T, path, directives string, reopen bool) *logrotated {
	t.Helper()
	dir := t.TempDir()
	l := &logrotated{t: t, path: path, conf: filepath.Join(dir, "logrotate.conf"), state: filepath.Join(dir, "state"), reopen: reopen}
	conf := fmt.Sprintf("%s {\n\t%s\n}\n", path, strings.ReplaceAll(directives, "\n", "\n\t"))
	if err := os.WriteFile(l.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	l.open()
	t.Cleanup(func() { l.f.Close() })
	return l
}

func (l *logrotated) open() {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	l.f = f
}

// write appends the next k lines, zap production JSON with their own ts
// (exact to the nanosecond), every tenth an error.
func (l *logrotated) write(k int) {
	var b strings.Builder
	for range k {
		l.n++
		level := "info"
		if l.n%10 == 0 {
			level = "error"
		}
		now := time.Now()
		fmt.Fprintf(&b, `{"level":%q,"ts":%d.%09d,"caller":"app/main.go:42","msg":"request handled","n":%d}`+"\n",
			level, now.Unix(), now.Nanosecond(), l.n)
	}
	if _, err := l.f.WriteString(b.String()); err != nil {
		l.t.Fatal(err)
	}
}

// rotate runs `logrotate -s state -f conf`, and in create mode reopens the
// file as an app does when told (postrotate).
func (l *logrotated) rotate() {
	l.t.Helper()
	// dateext names have a resolution of one second: a second rotation
	// within it would find its name taken.
	for time.Now().Unix() == l.rotated.Unix() {
		time.Sleep(10 * time.Millisecond)
	}
	out, err := exec.Command(logrotateBin(l.t), "-s", l.state, "-f", l.conf).CombinedOutput()
	if err != nil {
		l.t.Fatalf("logrotate %s: %v\n%s", l.conf, err, out)
	}
	l.rotated = time.Now()
	if l.reopen {
		l.f.Close()
		l.open()
	}
}

func logrotateBin(t *testing.T) string {
	for _, p := range []string{"logrotate", "/usr/sbin/logrotate"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("logrotate is not installed; the test bed (e2e/testbed/testbed.sh) installs it")
	return ""
}

// Two apps' log files rotated by Debian's logrotate, one in copytruncate
// mode (app.log copied to app.log.1, truncated, the copy gzipped to
// app.log.1.gz, older copies renumbered), one in create mode with dateext
// and delaycompress (app.log renamed app.log-YYYYMMDD-epoch, a new app.log
// created, the previous copy gzipped at the next rotation). Each gets 1,000
// lines, a rotation and 1,000 more while podtail runs; then 500 lines,
// podtail SIGKILLed at once, and 500 lines, a rotation and 500 more while it
// is down. After the restart every line is in Loki once, with its level and
// its own time: the lines written before the rotation that podtail had not
// read come from the compressed copy, from where it had got to.
func TestLogrotateEveryLineOnce(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "app log files are read the same whatever the log driver")
	logrotateBin(t)
	dataDir := t.TempDir()
	p1 := startPodtail(t, podtailOpts{dataDir: dataDir})
	tenant := name("logrotate")
	modes := map[string]string{
		"copytruncate": "copytruncate\ncompress\nrotate 5\nmissingok",
		"create":       "create 0644 root root\ncompress\ndelaycompress\ndateext\ndateformat -%Y%m%d-%s\nrotate 5\nmissingok",
	}
	apps := map[string]*logrotated{}
	dirs := map[string]string{}
	for mode, directives := range modes {
		app := "lr" + mode
		dirs[mode] = appDir(t, tenant, app)
		runContainer(t, name("lr", mode), tenant, app, "v1", "sleep 600", "-v", dirs[mode]+":/app/workplace/logs")
		apps[mode] = newLogrotated(t, filepath.Join(dirs[mode], tenant+"_"+app+"_v1.log"), directives, mode == "create")
	}
	sel := func(mode string) string {
		return fmt.Sprintf(`{tenant=%q, application="lr%s", stream="file"}`, tenant, mode)
	}
	each := func(f func(mode string, l *logrotated)) {
		for mode, l := range apps {
			f(mode, l)
		}
	}

	each(func(_ string, l *logrotated) { l.write(1000) })
	each(func(mode string, _ *logrotated) { waitCount(t, tenant, sel(mode), 1000, 30*time.Second) })
	each(func(_ string, l *logrotated) { l.rotate(); l.write(1000) })
	each(func(mode string, _ *logrotated) { waitCount(t, tenant, sel(mode), 2000, 30*time.Second) })

	each(func(_ string, l *logrotated) { l.write(500) })
	p1.signal(syscall.SIGKILL)
	<-p1.done
	atKill := map[string]int{}
	each(func(mode string, l *logrotated) {
		atKill[mode] = lokiCount(t, tenant, sel(mode))
		l.write(500)
		l.rotate()
		l.write(500)
	})

	startPodtail(t, podtailOpts{dataDir: dataDir})
	each(func(mode string, l *logrotated) {
		waitCount(t, tenant, sel(mode), l.n, 60*time.Second)
		ss, err := testbed.QueryAll(bed.lokiURL, tenant, sel(mode))
		if err != nil {
			t.Fatal(err)
		}
		checkZapLines(t, ss, l.n, map[string]string{"tenant": tenant, "application": "lr" + mode, "version": "v1"})
		var names []string
		entries, _ := os.ReadDir(dirs[mode])
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Logf("%s: %d lines in Loki when podtail was killed, %d (each once) after the restart; files: %s",
			mode, atKill[mode], l.n, strings.Join(names, " "))
	})
}
