package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"

	"github.com/podtail/podtail/e2e/testbed"
)

// Issue 5's promise under faults: Loki down, Loki refusing, podtail killed.
// Each test runs apps of the seed's kind (zap + lumberjack files, and
// stdout) and checks every line in Loki exactly once, by reading all of
// them back.

// span scales a fault's duration down when PODTAIL_E2E_SHORT is set, for
// quick runs while developing; CI runs them at full length.
func span(d time.Duration) time.Duration {
	if os.Getenv("PODTAIL_E2E_SHORT") != "" {
		return d / 6
	}
	return d
}

// writers is a set of containers of one tenant, each running the zap app:
// lines zap lines into its own mounted log file and "w<i>-<n>" on stdout,
// at rate lines/s. So 2 × n × lines entries in all, half of them files.
type writers struct {
	tenant      string
	n, lines    int
	first, last time.Time // when the first container started, the last finishes writing
	// over is how far back verify looks in Loki: the last hour, or more
	// for lines stamped while the clock was set back.
	over time.Duration
}

func startWriters(t *testing.T, tenant string, n, lines, rate int) *writers {
	t.Helper()
	return startWritersFrom(t, tenant, 0, n, lines, rate)
}

// startWritersFrom starts writers numbered from first (for a tenant that
// already has some).
func startWritersFrom(t *testing.T, tenant string, first, n, lines, rate int) *writers {
	t.Helper()
	w := &writers{tenant: tenant, n: n, lines: lines, first: time.Now()}
	for i := first; i < first+n; i++ {
		app := fmt.Sprintf("app%02d", i)
		runZapApp(t, tenant+"-"+app, tenant, app, "v1", appDir(t, tenant, app),
			fmt.Sprintf("-n %d -rate %d -echo w%02d- -hold 30m", lines, rate, i))
	}
	w.last = time.Now().Add(time.Second + time.Duration(lines)*time.Second/time.Duration(max(rate, 1)))
	return w
}

func (w *writers) total() int { return 2 * w.n * w.lines }

// verify reads every line back: each container's stdout once and in full,
// each file's zap lines once, with log_level and the zap ts.
func (w *writers) verify(t *testing.T) {
	t.Helper()
	over := max(w.over, time.Hour)
	waitCountOver(t, w.tenant, fmt.Sprintf(`{tenant=%q}`, w.tenant), w.total(), 2*time.Minute, over)
	for i := 0; i < w.n; i++ {
		app := fmt.Sprintf("app%02d", i)
		ss, err := testbed.QueryAllOver(bed.lokiURL, w.tenant, fmt.Sprintf(`{tenant=%q, application=%q, stream="stdout"}`, w.tenant, app), over)
		if err != nil {
			t.Fatal(err)
		}
		seqLines(t, lines(ss), fmt.Sprintf("w%02d-", i), w.lines)
		ss, err = testbed.QueryAllOver(bed.lokiURL, w.tenant, fmt.Sprintf(`{tenant=%q, application=%q, stream="file"}`, w.tenant, app), over)
		if err != nil {
			t.Fatal(err)
		}
		checkZapLines(t, ss, w.lines, map[string]string{"version": "v1"})
	}
}

// untilWritten sleeps until the writers are done writing.
func (w *writers) untilWritten() { time.Sleep(time.Until(w.last)) }

// acked waits until podtail has had every line of w acknowledged, and says
// how long that took from since.
func (w *writers) acked(t *testing.T, p *podtailProc, timeout time.Duration) {
	t.Helper()
	waitAcked(t, p, w.tenant, float64(w.total()), timeout)
}

// rssBelow fails the test if podtail's peak RSS went over limit.
func rssBelow(t *testing.T, p *podtailProc, limit int64) int64 {
	t.Helper()
	peak := p.peakRSS()
	if peak == 0 {
		t.Fatal("podtail's peak RSS could not be read")
	}
	if peak > limit {
		t.Errorf("podtail's peak RSS %.1f MiB, over memory_limit %.0f MiB", float64(peak)/(1<<20), float64(limit)/(1<<20))
	}
	return peak
}

// The outage: Loki stopped for 2 minutes while 20 containers print
// to stdout and write zap files (25 + 25 lines/s each), then started again.
// Every line arrives exactly once, podtail's RSS stays under its
// memory_limit throughout, and the queue filled (so sources were held back:
// lines waited on disk, and in files lumberjack rotated meanwhile).
func TestLokiDownTwoMinutes(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "Loki outages are the sink's; TestKilledTenTimes covers journal positions")
	const queue, limit = 8 << 20, 64 << 20
	p := startPodtail(t, podtailOpts{queueBytes: "8MiB", extra: "memory_limit: 64MiB\n"})
	outage := span(2 * time.Minute)
	const rate = 25
	// The writers go on until 15 s after Loki is back, its graceful stop
	// taking up to the test bed's 10 s: catching up is measured while they
	// still write. (With 10 s in all, a slow stop had them finish as Loki
	// came back, and the catch-up was never seen before every line was in.)
	lines := int((5*time.Second + 10*time.Second + outage + 15*time.Second).Seconds()) * rate
	w := startWriters(t, name("down"), 20, lines, rate)

	// Watch the queue; once Loki is started again, when the first push gets
	// through (resumed), and when delivery has caught up with the writers:
	// less than 256 KiB of their logs unacknowledged (about a second of their
	// writing). Loki takes seconds to become ready, and podtail pushes as soon
	// as it answers, so catching up is timed from resumed, not from Start.
	var (
		mu                sync.Mutex
		peakQueued        float64
		sentBefore        = -1.0
		resumed, caughtUp time.Time
		sentCaughtUp      float64
	)
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(100 * time.Millisecond):
			}
			q := p.metric("podtail_loki_queued_bytes")
			lag := p.metric("podtail_source_unacked_bytes", "tenant", w.tenant)
			sent := p.metric("podtail_loki_entries_sent_total", "tenant", w.tenant)
			mu.Lock()
			peakQueued = max(peakQueued, q)
			if sentBefore >= 0 && resumed.IsZero() && sent > sentBefore {
				resumed = time.Now()
			}
			if !resumed.IsZero() && caughtUp.IsZero() && lag < 256<<10 {
				caughtUp, sentCaughtUp = time.Now(), sent
			}
			mu.Unlock()
		}
	}()

	time.Sleep(5 * time.Second)
	bed.loki.Stop()
	down := time.Now()
	time.Sleep(outage)
	queued := p.metric("podtail_loki_queued_bytes")
	oldest := p.metric("podtail_loki_oldest_unacked_age_seconds", "tenant", w.tenant)
	mu.Lock()
	sentBefore = p.metric("podtail_loki_entries_sent_total", "tenant", w.tenant)
	mu.Unlock()
	started := time.Now()
	if err := bed.loki.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Loki down %s, ready %.1f s after it was started again; podtail held %.1f MiB, its oldest unacknowledged entry %.0f s old",
		started.Sub(down).Round(time.Second), time.Since(started).Seconds(), queued/(1<<20), oldest)
	if oldest < outage.Seconds()/2 {
		t.Errorf("oldest_unacked_age_seconds = %.1f after a %s outage", oldest, outage)
	}

	w.untilWritten()
	w.acked(t, p, 3*time.Minute)
	close(stopWatch)
	<-watched
	peak := rssBelow(t, p, limit)
	if resumed.IsZero() || caughtUp.IsZero() {
		t.Fatal("delivery never caught up (always 256 KiB or more unacknowledged)")
	}
	// The first push went through up to one sampling period before resumed.
	took := caughtUp.Sub(resumed) + 100*time.Millisecond
	t.Logf("first push through %.1f s after Loki was started; caught up within %.1f s of it: %.0f entries sent, %.0f/s (the writers add %d/s); peak queued %.2f MiB of %d MiB; peak RSS %.1f MiB (memory_limit %d MiB)",
		resumed.Sub(started).Seconds(), took.Seconds(), sentCaughtUp-sentBefore, (sentCaughtUp-sentBefore)/took.Seconds(),
		2*w.n*rate, peakQueued/(1<<20), queue>>20, float64(peak)/(1<<20), limit>>20)
	if peakQueued > queue+64<<10 {
		t.Errorf("queued bytes peaked at %.0f, over the bound %d", peakQueued, queue)
	}
	if peakQueued < queue*3/4 {
		t.Errorf("queued bytes peaked at %.0f: the outage never filled the queue, so backpressure went untested", peakQueued)
	}
	if d := p.metric("podtail_loki_entries_dropped_total"); d != 0 {
		t.Errorf("%.0f entries dropped", d)
	}
	w.verify(t)
}

// A proxy in front of Loki answers 429 to every other push for a minute,
// then for 30 s mixes 503s, connections reset before the push is forwarded,
// and pushes Loki stored whose answer is lost (the connection is reset
// instead). Every line arrives exactly once: before resending a push whose
// answer was lost, podtail asks Loki what it holds (without that, one run
// had 888 duplicates from 69 lost answers: Loki only recognises a resend
// while it is in the stream's head block).
func TestLokiRefusingAndFlaky(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "refusals are the sink's")
	proxy, err := testbed.StartFaultProxy(bed.lokiURL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	const limit = 64 << 20
	p := startPodtail(t, podtailOpts{lokiURL: proxy.URL, queueBytes: "8MiB", extra: "memory_limit: 64MiB\n"})
	tooMany, flaky := span(time.Minute), span(30*time.Second)
	const rate = 25
	lines := int((tooMany + flaky + 10*time.Second).Seconds()) * rate
	w := startWriters(t, name("flaky"), 20, lines, rate)

	proxy.SetRule(func(_ string, n uint64) testbed.Fault {
		if n%2 == 0 {
			return testbed.TooMany
		}
		return testbed.Pass
	})
	time.Sleep(tooMany)
	proxy.SetRule(func(_ string, n uint64) testbed.Fault {
		return [...]testbed.Fault{testbed.Unavailable, testbed.Reset, testbed.Pass, testbed.LostAnswer, testbed.Pass}[n%5]
	})
	time.Sleep(flaky)
	proxy.SetRule(func(string, uint64) testbed.Fault { return testbed.Pass })
	w.untilWritten()
	w.acked(t, p, 2*time.Minute)
	counts := proxy.Counts()
	t.Logf("pushes: %v; retries counted by podtail: 429 %.0f, 503 %.0f, network %.0f; uncertain pushes found stored %.0f, partly %.0f, not %.0f, unverified %.0f", counts,
		p.metric("podtail_loki_push_retries_total", "reason", "429"), p.metric("podtail_loki_push_retries_total", "reason", "503"),
		p.metric("podtail_loki_push_retries_total", "reason", "network"),
		p.metric("podtail_loki_uncertain_pushes_total", "outcome", "stored"), p.metric("podtail_loki_uncertain_pushes_total", "outcome", "partly_stored"),
		p.metric("podtail_loki_uncertain_pushes_total", "outcome", "not_stored"), p.metric("podtail_loki_uncertain_pushes_total", "outcome", "unverified"))
	for _, f := range []testbed.Fault{testbed.TooMany, testbed.Unavailable, testbed.Reset, testbed.LostAnswer} {
		if counts[f] == 0 {
			t.Errorf("no push met %s: the fault went untested", f)
		}
	}
	peak := rssBelow(t, p, limit)
	t.Logf("peak RSS %.1f MiB", float64(peak)/(1<<20))
	if d := p.metric("podtail_loki_entries_dropped_total"); d != 0 {
		t.Errorf("%.0f entries dropped", d)
	}
	w.verify(t)
}

// podtail SIGKILLed 10 times at random moments while 10 containers write
// (100 + 100 lines/s each) and one app writes 4,000 zap lines/s: after the
// last restart every line is in Loki exactly once. The lines carry their
// own time (zap's ts, conmon's), so a resend is identical to the original.
func TestKilledTenTimes(t *testing.T) {
	needBed(t)
	dataDir := t.TempDir()
	p := startPodtail(t, podtailOpts{dataDir: dataDir})
	run := span(40 * time.Second)
	slow := startWriters(t, name("kill"), 10, int(run.Seconds())*100, 100)
	fastTenant := name("killfast")
	fast := startWriters(t, fastTenant, 1, int(run.Seconds())*4000, 4000)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	// What each restarted podtail found Loki held of the lines it read
	// again (sent by the one killed, whose positions had not caught up).
	var stored, resent float64
	replayed := func() {
		stored += p.metric("podtail_loki_replayed_entries_total", "outcome", "stored")
		resent += p.metric("podtail_loki_replayed_entries_total", "outcome", "sent")
	}
	for i := 0; i < 10; i++ {
		time.Sleep(time.Duration(500+rng.IntN(int(run.Milliseconds())/10)) * time.Millisecond)
		replayed()
		p.signal(syscall.SIGKILL)
		<-p.done
		p = startPodtail(t, podtailOpts{dataDir: dataDir})
	}
	slow.untilWritten()
	fast.untilWritten()
	slow.verify(t)
	fast.verify(t)
	replayed()
	t.Logf("after the 10 restarts: %.0f lines read again were in Loki already (not sent again), %.0f were not (sent)", stored, resent)
}

// Loki refuses one entry (older than reject_old_samples_max_age) of a batch
// with a 400: only that entry is dropped, counted under its reason, the
// others of the batch are stored, and later lines keep flowing.
func TestRefusedEntryDropsOnlyItself(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "refusals are the sink's")
	p := startPodtail(t, podtailOpts{})
	tenant, app := name("refuse"), "old"
	logs := appDir(t, tenant, app)
	file := fmt.Sprintf("/app/workplace/logs/%s_%s_v1.log", tenant, app)
	zap := func(from, to int, ts string) string {
		return fmt.Sprintf(`i=%d; while [ $i -le %d ]; do echo "{\"level\":\"info\",\"ts\":%s,\"msg\":\"m\",\"n\":$i}" >>%s; i=$((i+1)); done`, from, to, ts, file)
	}
	old := fmt.Sprint(time.Now().Add(-30 * 24 * time.Hour).Unix())
	script := strings.Join([]string{"sleep 1", zap(1, 5, "$(date +%s).5"), zap(6, 6, old), zap(7, 11, "$(date +%s).5"),
		"sleep 2", zap(12, 16, "$(date +%s).7"), "sleep 300"}, "; ")
	runContainer(t, tenant+"-c", tenant, app, "v1", script, "-v", logs+":/app/workplace/logs")

	sel := fmt.Sprintf(`{tenant=%q, stream="file"}`, tenant)
	waitCount(t, tenant, sel, 15, 20*time.Second)
	eventually(t, 5*time.Second, "the refused entry counted", func() bool {
		return p.metric("podtail_loki_entries_dropped_total", "tenant", tenant, "reason", "too_old") == 1
	})
	ns := map[int]bool{}
	for _, l := range lines(query(t, tenant, sel)) {
		var n int
		if _, err := fmt.Sscanf(l[strings.Index(l, `"n":`)+4:], "%d", &n); err == nil {
			ns[n] = true
		}
	}
	if ns[6] || len(ns) != 15 {
		t.Errorf("Loki holds lines %v; want 1..16 but 6", ns)
	}
	if d := p.metric("podtail_loki_entries_dropped_total", "tenant", tenant); d != 1 {
		t.Errorf("dropped = %.0f, want 1", d)
	}
	if s := p.metric("podtail_loki_entries_sent_total", "tenant", tenant); s != 15 {
		t.Errorf("sent = %.0f, want 15", s)
	}
}

// deliveries records, through a FaultProxy, when Loki acknowledged each of a
// tenant's entries, keyed by the entry's time.
type deliveries struct {
	mu sync.Mutex
	at map[int64]time.Time // entry time (the zap ts) -> acknowledged
}

func (d *deliveries) observe(tenant string) testbed.Observer {
	return func(tn string, req *push.PushRequest, at time.Time) {
		if tn != tenant {
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, s := range req.Streams {
			for _, e := range s.Entries {
				if _, ok := d.at[e.Timestamp.UnixNano()]; !ok {
					d.at[e.Timestamp.UnixNano()] = at
				}
			}
		}
	}
}

// latencies returns, for each entry seen, acknowledged minus written (the
// entry's time is the zap ts, taken when the app wrote the line).
func (d *deliveries) latencies() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []time.Duration
	for ns, at := range d.at {
		out = append(out, at.Sub(time.Unix(0, ns)))
	}
	return out
}

// One tenant floods at full speed while another writes 10 lines/s: each of
// the quiet tenant's lines reaches Loki within 2 s of being written, first
// while the flood goes into Loki, then while Loki answers every one of the
// flooding tenant's pushes with 429 (its queue share full and stuck).
func TestQuietTenantNotHeldBackByFlood(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "fairness between tenants is the sink's")
	proxy, err := testbed.StartFaultProxy(bed.lokiURL)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	quiet, loud := name("fairquiet"), name("fairloud")
	d := &deliveries{at: map[int64]time.Time{}}
	proxy.Observe(d.observe(quiet))
	p := startPodtail(t, podtailOpts{lokiURL: proxy.URL, queueBytes: "16MiB"})

	phase := span(15 * time.Second)
	startWriters(t, loud, 1, 1_000_000, 0)
	q := startWriters(t, quiet, 1, int(2*phase.Seconds())*10, 10)
	time.Sleep(phase)
	proxy.SetRule(func(tenant string, _ uint64) testbed.Fault {
		if tenant == loud {
			return testbed.TooMany
		}
		return testbed.Pass
	})
	startWritersFrom(t, loud, 1, 1, 1_000_000, 0) // a second flood, refused
	var loudQueued float64
	for time.Now().Before(q.last) {
		loudQueued = max(loudQueued, p.metric("podtail_loki_tenant_queued_bytes", "tenant", loud))
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	loudSent := p.metric("podtail_loki_entries_sent_total", "tenant", loud)
	proxy.SetRule(func(string, uint64) testbed.Fault { return testbed.Pass })

	lat := d.latencies()
	var worst time.Duration
	late := 0
	for _, l := range lat {
		worst = max(worst, l)
		if l > 2*time.Second {
			late++
		}
	}
	t.Logf("quiet tenant: %d entries acknowledged, worst %s after written; flooding tenant: %.0f entries sent meanwhile, %.0f pushes refused",
		len(lat), worst.Round(time.Millisecond), loudSent, float64(proxy.Counts()[testbed.TooMany]))
	if len(lat) != q.total() {
		t.Errorf("%d of the quiet tenant's %d entries reached Loki", len(lat), q.total())
	}
	if late > 0 {
		t.Errorf("%d of the quiet tenant's lines took over 2 s (worst %s)", late, worst)
	}
	if loudSent < 100_000 {
		t.Errorf("the flooding tenant had only %.0f entries sent: no flood", loudSent)
	}
	if refused := proxy.Counts()[testbed.TooMany]; refused == 0 || loudQueued < 8<<20 {
		t.Errorf("the refused flood never filled its share (%d pushes refused, %.1f MiB queued at most)", refused, loudQueued/(1<<20))
	}
	t.Logf("the refused flood held %.1f MiB of the 16 MiB queue", loudQueued/(1<<20))
	q.verify(t)
}
