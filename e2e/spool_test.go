package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A container prints 500 lines and is removed (`podman rm` deletes its log)
// while Loki is down, and podtail is killed before it could deliver them:
// the spool's hard link kept the log, so after the restart every line
// arrives, once, and the link is gone afterwards.
//
// Twice: with data_dir where Podman's storage is (the spool hard-links each
// log), and on a mount of its own, a tmpfs, as in the sidecar (it copies the
// undelivered part when the container is removed).
func TestSpoolKeepsRemovedContainerAcrossRestart(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "the spool keeps removed containers' ctr.log; the journal keeps a journald container's lines itself")
	t.Run("link", func(t *testing.T) { spoolAcrossRestart(t, t.TempDir(), "link") })
	t.Run("copy", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Fatalf("mount a tmpfs for data_dir: %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
		spoolAcrossRestart(t, dir, "copy")
	})
}

func spoolAcrossRestart(t *testing.T, dataDir, mode string) {
	p := startPodtail(t, podtailOpts{dataDir: dataDir})
	tenant := name("spool", mode)
	bed.loki.Stop()
	lokiUp := false
	defer func() {
		if !lokiUp {
			_ = bed.loki.Start()
		}
	}()
	cname := name("spool", mode, "c")
	id := runContainer(t, cname, tenant, "gone", "v1", "sleep 1; "+printLoop("spool", 500, 0, false))
	eventually(t, 20*time.Second, "the container's 500 lines read", func() bool {
		return p.metric("podtail_source_entries_read_total", "tenant", tenant) >= 500
	})
	podman(t, "rm", "-f", "-t", "0", cname)
	link := filepath.Join(dataDir, "spool", id+".log")
	eventually(t, 10*time.Second, "the container in the spool", func() bool {
		_, err := os.Stat(filepath.Join(dataDir, "spool", id+".json"))
		return err == nil
	})
	p.signal(syscall.SIGKILL)
	<-p.done

	p = startPodtail(t, podtailOpts{dataDir: dataDir})
	if err := bed.loki.Start(); err != nil {
		t.Fatal(err)
	}
	lokiUp = true
	sel := fmt.Sprintf(`{tenant=%q}`, tenant)
	waitCount(t, tenant, sel, 500, 60*time.Second)
	seqLines(t, lines(query(t, tenant, sel)), "spool-out-", 500)
	eventually(t, 30*time.Second, "the spool link removed once delivered", func() bool {
		_, err := os.Stat(link)
		return os.IsNotExist(err)
	})
}
