package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// Loki stopped for 20 s while three containers and a zap + lumberjack app
// keep writing, then started again: every line arrives exactly once (this
// caught a tailer that, pushed back, shipped a whole buffer of unsent lines
// as one 825 KB entry, which Loki refused with a 400), and
// podtail's memory stays bounded meanwhile: with loki.queue_bytes 2 MiB the
// queue fills, readers stop, and lines wait on disk (the app's rotated files
// too: podtail keeps opening them, and an open descriptor keeps a deleted
// file's data).
func TestLokiOutage(t *testing.T) {
	needBed(t)
	const bound = 2 << 20
	p := startPodtail(t, podtailOpts{queueBytes: "2MiB"})
	tenant := name("outage")
	const perContainer, fileLines = 3000, 40000
	for i := 0; i < 3; i++ {
		runContainer(t, name("outage", fmt.Sprint(i)), tenant, fmt.Sprintf("ticker%d", i), "v1",
			printLoop(fmt.Sprintf("tick%d", i), perContainer, 5000, false)+"; sleep 300")
	}
	runZapApp(t, name("outage", "files"), tenant, "orders", "v2", appDir(t, tenant, "orders"), fmt.Sprintf("-n %d -rate 2000 -hold 5m", fileLines))
	total := 3*perContainer + fileLines

	var peak, peakQueued float64
	var mu sync.Mutex
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() { // podtail's RSS, sampled while it runs
		defer close(watched)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(200 * time.Millisecond):
			}
			rss, queued := p.metric("process_resident_memory_bytes"), p.metric("podtail_loki_queued_bytes")
			mu.Lock()
			peak, peakQueued = max(peak, rss), max(peakQueued, queued)
			mu.Unlock()
		}
	}()

	time.Sleep(3 * time.Second)
	bed.loki.Stop()
	downAt := time.Now()
	time.Sleep(20 * time.Second)
	queued := p.metric("podtail_loki_queued_bytes")
	if err := bed.loki.Start(); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	t.Logf("Loki down %s; podtail had %.1f MiB queued when it came back", upAt.Sub(downAt).Round(time.Second), queued/(1<<20))

	deadline := time.Now().Add(90 * time.Second)
	for p.metric("podtail_loki_entries_sent_total", "tenant", tenant) < float64(total) && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if sent := p.metric("podtail_loki_entries_sent_total", "tenant", tenant); sent < float64(total) {
		t.Fatalf("%.0f of %d entries acknowledged 90 s after Loki came back; read: files %.0f, containers %.0f; dropped %.0f; queued %.0f bytes",
			sent, total, p.metric("podtail_file_lines_read_total", "tenant", tenant), p.metric("podtail_source_entries_read_total", "tenant", tenant),
			p.metric("podtail_loki_entries_dropped_total", "tenant", tenant), p.metric("podtail_loki_queued_bytes"))
	}
	caughtUp := time.Since(upAt)
	close(stopWatch)
	<-watched
	for i := 0; i < 3; i++ {
		sel := fmt.Sprintf(`{tenant=%q, application="ticker%d"}`, tenant, i)
		waitCount(t, tenant, sel, perContainer, 30*time.Second)
		seqLines(t, lines(query(t, tenant, sel)), fmt.Sprintf("tick%d-out-", i), perContainer)
	}
	fileSel := fmt.Sprintf(`{tenant=%q, application="orders", stream="file"}`, tenant)
	waitCount(t, tenant, fileSel, fileLines, 30*time.Second)
	ss, err := testbed.QueryAll(bed.lokiURL, tenant, fileSel)
	if err != nil {
		t.Fatal(err)
	}
	checkZapLines(t, ss, fileLines, map[string]string{"version": "v2"})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("all %d lines once; caught up %.1fs after Loki came back; peak queued %.2f MiB (bound 2 MiB); peak RSS %.1f MiB",
		total, caughtUp.Seconds(), peakQueued/(1<<20), peak/(1<<20))
	if peakQueued > bound+64<<10 { // the bound admits one entry past it
		t.Errorf("queued bytes peaked at %.0f, over the bound %d", peakQueued, bound)
	}
	if peakQueued < bound*3/4 {
		t.Errorf("queued bytes peaked at %.0f: the outage never filled the queue, so backpressure went untested", peakQueued)
	}
	if peak > 96<<20 {
		t.Errorf("peak RSS %.1f MiB", peak/(1<<20))
	}
}
