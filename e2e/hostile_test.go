package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"

	"github.com/podtail/podtail/e2e/testbed"
)

// pushWatch sees every entry Loki acknowledged through the proxy: it keeps,
// for the quiet tenant, when each entry (by its time, the zap ts) was
// acknowledged, and, for every tenant, any entry carrying what must never
// reach Loki under that tenant.
type pushWatch struct {
	quiet     string
	forbidden func(tenant, labels, line string) string // why the entry must not be there, or ""

	mu     sync.Mutex
	acked  map[int64]time.Time
	leaks  []string
	counts map[string]int
}

func (w *pushWatch) observe(tenant string, req *push.PushRequest, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			w.counts[tenant]++
			if tenant == w.quiet {
				if _, ok := w.acked[e.Timestamp.UnixNano()]; !ok {
					w.acked[e.Timestamp.UnixNano()] = at
				}
			}
			if why := w.forbidden(tenant, s.Labels, e.Line); why != "" && len(w.leaks) < 20 {
				w.leaks = append(w.leaks, fmt.Sprintf("%s under %s %s: %.80q", why, tenant, s.Labels, e.Line))
			}
		}
	}
}

// A hostile tenant's container plants, in its mounted logs directory,
// symlinks to another tenant's log file, to /etc/shadow and to /, a FIFO,
// a 10 MB line, invalid UTF-8 and NUL bytes, lines claiming the other
// tenant, application and version in their JSON (in a file and on stdout),
// a hundred files of new versions (streams), and 1M lines as fast as it can;
// the test adds hard links to the other tenant's live file and to a host
// file. A third tenant's log directory is a symlink to the quiet tenant's.
// Meanwhile the quiet tenant writes 10 zap lines/s.
//
// Nothing from outside a tenant's own mount reaches Loki (every push is
// checked at the proxy, and Loki is queried); podtail stays ready; each
// refusal is counted and logged once; the claims land under the hostile
// tenant with its own labels; its streams stop at the bound; the quiet
// tenant's lines all arrive, each within 2 s of being written.
func TestHostileTenant(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "a tenant's hostile log directory is read the same whatever the log driver")
	quiet, evil, sneaky := name("quiet"), name("evil"), name("sneaky")

	shadowBytes, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatalf("the test looks for /etc/shadow's lines in Loki: %v", err)
	}
	var shadow []string
	for _, l := range strings.Split(string(shadowBytes), "\n") {
		if len(l) >= 8 {
			shadow = append(shadow, l)
		}
	}
	secretMark := "HOST-SECRET-" + bed.runID
	hostSecret := filepath.Join(t.TempDir(), "secret.log")
	if err := os.WriteFile(hostSecret, []byte(secretMark+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	w := &pushWatch{quiet: quiet, acked: map[int64]time.Time{}, counts: map[string]int{},
		forbidden: func(tenant, labels, line string) string {
			if !strings.Contains(labels, fmt.Sprintf("tenant=%q", tenant)) {
				return "tenant label not the X-Scope-OrgID"
			}
			if strings.Contains(line, secretMark) {
				return "a host file's line"
			}
			for _, s := range shadow {
				if strings.Contains(line, s) {
					return "/etc/shadow's line"
				}
			}
			// (podtail sees other tests' containers too: their zap lines
			// are theirs.)
			if (tenant == evil || tenant == sneaky) && strings.Contains(line, `"request_id"`) {
				return "the quiet tenant's line"
			}
			if tenant == quiet && (strings.Contains(line, "flood ") || strings.Contains(line, "claim")) {
				return "the hostile tenant's line"
			}
			return ""
		}}
	proxy, err := testbed.StartFaultProxy(bed.lokiURL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.Observe(w.observe)
	const maxStreams = 20
	p := startPodtail(t, podtailOpts{lokiURL: proxy.URL, extra: fmt.Sprintf("limits:\n  max_streams_per_tenant: %d\n", maxStreams)})

	// podtail must answer /ready throughout.
	var notReady, probes int
	var probeMu sync.Mutex
	stopProbe := make(chan struct{})
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		c := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stopProbe:
				return
			case <-time.After(250 * time.Millisecond):
			}
			resp, err := c.Get("http://" + p.listen + "/ready")
			probeMu.Lock()
			probes++
			if err != nil || resp.StatusCode != http.StatusOK {
				notReady++
			}
			probeMu.Unlock()
			if err == nil {
				resp.Body.Close()
			}
		}
	}()

	// The quiet tenant: 10 lines/s for a minute.
	const quietN = 600
	quietLogs := appDir(t, quiet, "calm")
	quietFile := filepath.Join(quietLogs, quiet+"_calm_v1.log")
	quietSel := fmt.Sprintf(`{tenant=%q, stream="file"}`, quiet)
	runZapApp(t, name("quiet"), quiet, "calm", "v1", quietLogs, fmt.Sprintf("-n %d -rate 10 -hold 10m", quietN))
	eventually(t, 20*time.Second, "the quiet tenant's first line", func() bool { return lokiCount(t, quiet, quietSel) > 0 })

	// Hard links into the hostile directory, made from the host (a tenant
	// would need access to the files; the end state is the same): the quiet
	// tenant's live file, and a host file.
	evilLogs := appDir(t, evil, "flood")
	for src, dst := range map[string]string{quietFile: "stolen_hard.log", hostSecret: "host_hard.log"} {
		if err := os.Link(src, filepath.Join(evilLogs, dst)); err != nil {
			t.Fatalf("hard link (same filesystem expected): %v", err)
		}
	}
	// A tenant whose log directory's path is a symlink to the quiet one's.
	sneakyWork := filepath.Join(t.TempDir(), "namespace", sneaky, "peek", "workplace")
	if err := os.MkdirAll(sneakyWork, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(quietLogs, filepath.Join(sneakyWork, "logs")); err != nil {
		t.Fatal(err)
	}
	runContainer(t, name("sneaky"), sneaky, "peek", "v1", "sleep 600", "-v", filepath.Join(sneakyWork, "logs")+":/app/workplace/logs")

	const floodN = 1_000_000
	claim := fmt.Sprintf(`{"level":"info","tenant":%q,"application":"stolen","version":"v666","msg":"claim`, quiet)
	script := fmt.Sprintf(`set -e
L=/app/workplace/logs
sleep 1
ln -s %[1]s $L/stolen_link.log
ln -s /etc/shadow $L/shadow.log
ln -s / $L/root.log
mkfifo $L/pipe.log
printf 'bad utf8 \377\376 end\nnul a\000b\000c\n' > $L/weird.log
i=0; while [ $i -lt 10 ]; do echo '%[2]s '$i'"}'; i=$((i+1)); done | tee $L/claims.log
head -c 10485760 /dev/zero | tr '\000' x > $L/big.log
echo >> $L/big.log
echo after-big >> $L/big.log
seq 1 %[3]d | sed 's/^/flood /' > $L/flood.log
echo flood-written
i=2; while [ $i -le 101 ]; do echo "version file $i" > $L/%[4]s_flood_v$i.log; i=$((i+1)); done
sleep 600`, quietFile, claim, floodN, evil)
	started := time.Now()
	runContainer(t, name("evil"), evil, "flood", "v1", script, "-v", evilLogs+":/app/workplace/logs")

	floodSel := fmt.Sprintf(`{tenant=%q, stream="file"} |= "flood "`, evil)
	waitAcked(t, p, evil, floodN, 4*time.Minute)
	floodTook := time.Since(started)
	waitCount(t, evil, floodSel, floodN, time.Minute)
	waitCount(t, quiet, quietSel, quietN, 2*time.Minute)
	close(stopProbe)
	<-probeDone

	// Nothing from outside its own mount under any tenant, as pushed...
	w.mu.Lock()
	leaks, evilPushed := slices.Clone(w.leaks), w.counts[evil]
	w.mu.Unlock()
	for _, l := range leaks {
		t.Error(l)
	}
	// ...and as Loki holds it.
	for _, c := range []struct{ tenant, sel string }{
		{evil, fmt.Sprintf(`{tenant=%q} |= "request_id"`, evil)},
		{evil, fmt.Sprintf(`{tenant=%q} |= "root:"`, evil)},
		{evil, fmt.Sprintf(`{tenant=%q} |= %q`, evil, secretMark)},
		{sneaky, fmt.Sprintf(`{tenant=%q, stream="file"}`, sneaky)},
		{quiet, fmt.Sprintf(`{tenant=%q} |= "flood "`, quiet)},
		{quiet, fmt.Sprintf(`{tenant=%q} |= "claim"`, quiet)},
		{quiet, `{application="stolen"}`},
		{quiet, `{version="v666"}`},
	} {
		if n := lokiCount(t, c.tenant, c.sel); n != 0 {
			t.Errorf("%s as %s: %d entries, want none", c.sel, c.tenant, n)
		}
	}

	// The claims: under the hostile tenant, with its own labels, from the
	// file and from stdout.
	claimSel := fmt.Sprintf(`{tenant=%q, application="flood", version="v1"} |= "claim"`, evil)
	if n := lokiCount(t, evil, claimSel); n != 20 {
		t.Errorf("%s: %d entries, want the 10 file and 10 stdout claims", claimSel, n)
	}

	// The 10 MB line: one entry, cut to the limit with the marker; the next
	// line intact. Invalid UTF-8 repaired, NUL kept.
	var big, after, repaired, nul bool
	for _, l := range lines(query(t, evil, fmt.Sprintf(`{tenant=%q, stream="file"} != "flood " != "claim" != "version file"`, evil))) {
		switch {
		case strings.HasPrefix(l, "xxxx"):
			if big {
				t.Errorf("the 10 MB line came as more than one entry")
			}
			big = len(l) == 256<<10 && strings.HasSuffix(l, "…[truncated by podtail]")
		case l == "after-big":
			after = true
		case strings.HasPrefix(l, "bad utf8"):
			repaired = l == "bad utf8 \uFFFD end" // one U+FFFD per run of bad bytes
		case strings.HasPrefix(l, "nul"):
			nul = l == "nul a\x00b\x00c"
		}
	}
	if !big || !after || !repaired || !nul {
		t.Errorf("10 MB line truncated once %v, line after it %v, UTF-8 repaired %v, NUL kept %v", big, after, repaired, nul)
	}

	// Streams: the hostile tenant's stop at the bound; the rest are counted.
	groups, err := testbed.CountBy(bed.lokiURL, evil, fmt.Sprintf(`{tenant=%q}`, evil), "application, version, stream, log_level")
	if err != nil {
		t.Fatal(err)
	}
	dropped := p.metric("podtail_pipeline_entries_dropped_total", "tenant", evil, "reason", "stream_limit")
	if len(groups) > maxStreams || dropped < 1 {
		t.Errorf("hostile tenant: %d streams in Loki (bound %d), %.0f lines dropped for the bound", len(groups), maxStreams, dropped)
	}

	// Each refusal counted and logged once.
	for reason, want := range map[string]float64{"symlink": 3, "fifo": 1, "hardlink": 2} {
		if got := p.metric("podtail_file_refused_total", "tenant", evil, "reason", reason); got != want {
			t.Errorf("refused %s for %s: %.0f, want %.0f", reason, evil, got, want)
		}
	}
	if got := p.metric("podtail_file_refused_total", "tenant", sneaky, "reason", "dir_symlink"); got != 1 {
		t.Errorf("refused dir_symlink for %s: %.0f, want 1", sneaky, got)
	}
	if got := p.metric("podtail_file_refused_total", "tenant", quiet); got != 0 {
		t.Errorf("the quiet tenant's own file refused %.0f times", got)
	}
	warned := 0
	for _, l := range strings.Split(p.Log(), "\n") {
		if strings.Contains(l, "not read") && strings.Contains(l, fmt.Sprintf(`"tenant":%q`, evil)) {
			warned++
		}
	}
	if warned != 6 {
		t.Errorf("%d refusal warnings for %s, want 6 (one per planted file)", warned, evil)
	}

	probeMu.Lock()
	if notReady > 0 || probes == 0 {
		t.Errorf("/ready failed %d of %d probes", notReady, probes)
	}
	probeMu.Unlock()

	// The quiet tenant: every line once, each acknowledged within 2 s of
	// being written.
	ss, err := testbed.QueryAll(bed.lokiURL, quiet, quietSel)
	if err != nil {
		t.Fatal(err)
	}
	checkZapLines(t, ss, quietN, map[string]string{"tenant": quiet, "application": "calm", "version": "v1"})
	w.mu.Lock()
	var lat []time.Duration
	var duringFlood time.Duration // the worst of the lines written while the flood was being shipped
	for ns, at := range w.acked {
		d := at.Sub(time.Unix(0, ns))
		lat = append(lat, d)
		if written := time.Unix(0, ns); written.After(started) && written.Before(started.Add(floodTook)) {
			duringFlood = max(duringFlood, d)
		}
	}
	w.mu.Unlock()
	slices.Sort(lat)
	if len(lat) < quietN {
		t.Fatalf("%d of the quiet tenant's entries seen at the proxy, want at least %d", len(lat), quietN)
	}
	late := 0
	for _, d := range lat {
		if d > 2*time.Second {
			late++
		}
	}
	t.Logf("hostile tenant: %d entries pushed in %d streams (%.0f lines of new streams dropped at the bound), its 1M-line flood acknowledged %.1fs after podman run",
		evilPushed, len(groups), dropped, floodTook.Seconds())
	t.Logf("quiet tenant: %d entries, write to acknowledgement p50 %s, p99 %s, max %s; max %s for lines written while the flood was shipped",
		len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), duringFlood.Round(time.Millisecond))
	if late > 0 {
		t.Errorf("%d of the quiet tenant's %d entries took over 2 s from write to Loki's acknowledgement (max %s)", late, len(lat), lat[len(lat)-1])
	}
}
