package e2e

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// SIGHUP reloads the configuration. A bad one is reported, naming the key,
// and the running collector carries on (so does one moving data_dir); a good one replaces it (here: a new
// listen address) without losing or repeating a line of two apps writing
// throughout.
func TestReloadOnSIGHUP(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "configuration reloads do not depend on the log driver")
	p := startPodtail(t, podtailOpts{})
	w := startWriters(t, name("reload"), 2, 600, 50)
	time.Sleep(3 * time.Second)
	orig, err := os.ReadFile(p.cfgFile)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(p.cfgFile, append(orig, "\nshutdown_timout: 5s\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "the bad configuration reported", func() bool {
		return strings.Contains(p.Log(), "not valid") && strings.Contains(p.Log(), "shutdown_timout: unknown key (did you mean shutdown_timeout")
	})
	// data_dir holds the run's lock and positions: a reload cannot move it.
	moved := regexp.MustCompile(`(?m)^data_dir: .*$`).ReplaceAllString(string(orig), "data_dir: "+t.TempDir())
	if moved == string(orig) {
		t.Fatalf("no data_dir in the config:\n%s", orig)
	}
	if err := os.WriteFile(p.cfgFile, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "the data_dir change refused", func() bool {
		return strings.Contains(p.Log(), "data_dir cannot change on a reload")
	})
	sent := p.metric("podtail_loki_entries_sent_total", "tenant", w.tenant)
	time.Sleep(time.Second)
	if now := p.metric("podtail_loki_entries_sent_total", "tenant", w.tenant); now <= sent {
		t.Fatalf("nothing sent after a refused reload (%.0f then %.0f)", sent, now)
	}

	oldListen := p.listen
	newListen := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort())
	cfg := strings.Replace(string(orig), "listen: "+oldListen, "listen: "+newListen, 1)
	if cfg == string(orig) {
		t.Fatalf("no listen: %s in the config:\n%s", oldListen, orig)
	}
	if err := os.WriteFile(p.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	if err := testbed.WaitHTTP("http://"+newListen+"/ready", 20*time.Second); err != nil {
		t.Fatalf("not serving on the reloaded server.listen: %v", err)
	}
	if resp, err := http.Get("http://" + oldListen + "/ready"); err == nil {
		resp.Body.Close()
		t.Errorf("still serving on the old address after the reload")
	}
	p.listen = newListen

	w.untilWritten()
	w.verify(t)
	select {
	case <-p.done:
		t.Fatalf("podtail exited:\n%s", tail(p.Log(), 20))
	default:
	}
}
