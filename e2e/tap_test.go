package e2e

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tapProc is one running `podtail tap`, its stdout read line by line as it
// comes, each line with when it came.
type tapProc struct {
	cmd    *exec.Cmd
	stderr syncBuffer
	mu     sync.Mutex
	lines  []tapLine
	done   chan struct{}
}

type tapLine struct {
	text string
	at   time.Time
}

func startTap(t *testing.T, args ...string) *tapProc {
	t.Helper()
	tp := &tapProc{cmd: exec.Command(bed.podtail, append([]string{"tap"}, args...)...), done: make(chan struct{})}
	tp.cmd.Stderr = &tp.stderr
	out, err := tp.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(tp.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			tp.mu.Lock()
			tp.lines = append(tp.lines, tapLine{sc.Text(), time.Now()})
			tp.mu.Unlock()
		}
		_ = tp.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = tp.cmd.Process.Kill()
		<-tp.done
	})
	eventually(t, 10*time.Second, "podtail tap listening", func() bool {
		return strings.Contains(tp.stderr.String(), "podtail tap: ")
	})
	return tp
}

func (tp *tapProc) got() []tapLine {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]tapLine(nil), tp.lines...)
}

// interrupt is Ctrl-C: the tap ends, exit status 0.
func (tp *tapProc) interrupt(t *testing.T) {
	t.Helper()
	_ = tp.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-tp.done:
	case <-time.After(5 * time.Second):
		t.Fatal("podtail tap did not end within 5 s of SIGINT")
	}
	if code := tp.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("podtail tap exited %d after SIGINT:\n%s", code, tp.stderr.String())
	}
}

// The tap: `podtail tap --app A` shows A's lines, and only A's,
// within a second of conmon writing them, while another application of
// another tenant writes as fast as it can (its container output and its
// zap file) and podtail ships it at full speed meanwhile. A second tap,
// on the fast application at 50 entries a second, is told what it did not
// get; podtail's shipping goes on.
func TestTapShowsAnAppLive(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "the tap sits in pipeline.Stream, after every source: what it shows, and when, "+
		"is the same for journald output, a few hundred ms later, as journald wakes its readers late (README: known limits)")
	t.Setenv("PODTAIL_SERVER_TAP", "true") // server.tap, for the podtail started below
	p := startPodtail(t, podtailOpts{})
	slowTenant, fastTenant := name("tap"), name("tapfast")

	runZapApp(t, name("tap-fast"), fastTenant, "fast", "v1", appDir(t, fastTenant, "fast"), "-n 2000000 -maxsize 100 -echo f- -hold 30m")
	eventually(t, 30*time.Second, "the fast app shipping", func() bool {
		return p.metric("podtail_loki_entries_sent_total", "tenant", fastTenant) > 20000
	})
	// The slow app starts writing 6 s after it starts: its start is not in
	// the windows compared below.
	const n = 20
	runContainer(t, name("tap-slow"), slowTenant, "slow", "v1",
		fmt.Sprintf(`sleep 6; i=0; while [ $i -lt %d ]; do i=$((i+1)); echo "slow-$i"; usleep 200000; done; sleep 600`, n))
	time.Sleep(time.Second)
	// podtail at full speed, untapped: lines per second and CPU per line.
	sent0, cpu0, t0 := p.metric("podtail_loki_entries_sent_total", "tenant", fastTenant), p.metric("process_cpu_seconds_total"), time.Now()
	time.Sleep(3 * time.Second)
	sent1, cpu1, t1 := p.metric("podtail_loki_entries_sent_total", "tenant", fastTenant), p.metric("process_cpu_seconds_total"), time.Now()

	tp := startTap(t, "--listen", p.listen, "--app", "slow")
	if got := tp.stderr.String(); !strings.Contains(got, "application slow, shipped") {
		t.Errorf("tap's first line on stderr: %q", got)
	}
	sampled := startTap(t, "--listen", p.listen, "--app", "fast", "--rate", "50", "--json")
	eventually(t, 30*time.Second, fmt.Sprintf("%d lines of the slow app on the tap", n), func() bool {
		return len(tp.got()) >= n
	})
	sent2, cpu2, t2 := p.metric("podtail_loki_entries_sent_total", "tenant", fastTenant), p.metric("process_cpu_seconds_total"), time.Now()

	var worst time.Duration
	for i, l := range tp.got() {
		// 2030-01-02T03:04:05.000000006+00:00 {labels} line
		ts, rest, _ := strings.Cut(l.text, " ")
		at, err := time.Parse("2006-01-02T15:04:05.000000000Z07:00", ts)
		if err != nil {
			t.Fatalf("line %d: %q: %v", i, l.text, err)
		}
		want := fmt.Sprintf(`{application="slow", stream="stdout", tenant=%q, version="v1"} slow-%d`, slowTenant, i+1)
		if !strings.HasPrefix(rest, want) {
			t.Errorf("line %d: %q, want %s...", i, rest, want)
		}
		if d := l.at.Sub(at); d > worst {
			worst = d
		}
	}
	if worst > time.Second {
		t.Errorf("a line reached the tap %s after conmon wrote it, want within 1 s", worst)
	}
	eventually(t, 10*time.Second, "the sampled tap told what it missed", func() bool {
		return strings.Contains(sampled.stderr.String(), "entries not shown so far")
	})
	if n := len(sampled.got()); n == 0 || !strings.Contains(sampled.got()[0].text, `"application":"fast"`) {
		t.Errorf("the sampled tap printed %d lines; first %v", n, sampled.got()[:min(n, 1)])
	}
	tp.interrupt(t)
	sampled.interrupt(t)
	untapped, tapped := (sent1-sent0)/t1.Sub(t0).Seconds(), (sent2-sent1)/t2.Sub(t1).Seconds()
	cpuUntapped, cpuTapped := 1e6*(cpu1-cpu0)/(sent1-sent0), 1e6*(cpu2-cpu1)/(sent2-sent1)
	t.Logf("the slow app's lines on the tap at most %s after conmon wrote them; the fast app shipped at %.0f lines/s untapped "+
		"(podtail %.2f µs CPU per line), %.0f lines/s with both taps open (%.2f µs CPU per line)",
		worst.Round(time.Millisecond), untapped, cpuUntapped, tapped, cpuTapped)
	// podtail shares this machine's cores with Loki, Podman and the app, so
	// lines per second wander with them; CPU per line is podtail's own, but
	// it too grows when the machine is busy (measured: 5.0 µs either way on
	// a quiet machine, 5.0 and 8.0 µs with a compiler running meanwhile).
	// The bounds catch a tap that holds the pipeline back or copies every
	// line; the Go benchmarks of Stream.Send measure its cost.
	if tapped < untapped/4 || cpuTapped > 2*cpuUntapped {
		t.Errorf("shipping went from %.0f lines/s at %.2f µs CPU each to %.0f at %.2f µs while tapped",
			untapped, cpuUntapped, tapped, cpuTapped)
	}
}
