package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A container prints 500 lines and is removed (`podman rm` deletes its log)
// while Loki is down, and podtail is killed before it could deliver them:
// the spool's hard link kept the log, so after the restart every line
// arrives, once, and the link is gone afterwards.
func TestSpoolKeepsRemovedContainerAcrossRestart(t *testing.T) {
	needBed(t)
	dataDir := t.TempDir()
	p := startPodtail(t, podtailOpts{dataDir: dataDir})
	tenant := name("spool")
	bed.loki.Stop()
	lokiUp := false
	defer func() {
		if !lokiUp {
			_ = bed.loki.Start()
		}
	}()
	cname := name("spool", "c")
	id := runContainer(t, cname, tenant, "gone", "v1", "sleep 1; "+printLoop("spool", 500, 0, false))
	eventually(t, 20*time.Second, "the container's 500 lines read", func() bool {
		return p.metric("podtail_source_entries_read_total", "tenant", tenant) >= 500
	})
	podman(t, "rm", "-f", "-t", "0", cname)
	link := filepath.Join(dataDir, "spool", id+".log")
	if _, err := os.Stat(link); err != nil {
		t.Fatalf("no spool link for the container: %v", err)
	}
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
