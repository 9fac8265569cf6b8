package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podtail/podtail/e2e/testbed"
)

// Issue 21's state under faults: data_dir full, the positions file
// damaged, the clock stepped back an hour. Each runs apps of the seed's
// kind (zap + lumberjack files, and stdout) through real Podman and Loki,
// and checks every line in Loki exactly once.

// storedPosition is what the tests read of a stored position.
type storedPosition struct {
	Offset  int64     `json:"offset"`
	Cursor  string    `json:"cursor"`
	Updated time.Time `json:"updated"`
}

// readPositions reads data_dir's positions file, failing the test unless it
// is a whole, valid one.
func readPositions(t *testing.T, dataDir string) (map[string]storedPosition, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Version   int                       `json:"version"`
		Positions map[string]storedPosition `json:"positions"`
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		t.Fatalf("positions.json is not a whole positions file (version %d, %v):\n%s", f.Version, err, b)
	}
	return f.Positions, b
}

// waitCountOver is waitCount over the last span.
func waitCountOver(t *testing.T, tenant, selector string, want int, timeout, span time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, err := testbed.CountOver(bed.lokiURL, tenant, selector, span)
		if err != nil {
			t.Fatal(err)
		}
		if n > want {
			t.Fatalf("%s as %s: %d entries, more than the %d written", selector, tenant, n, want)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s as %s: %d of %d entries after %s", selector, tenant, n, want, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// tmpfsDataDir mounts a tmpfs of size (mount's syntax: 4m) as a fresh
// data_dir, unmounted when the test ends (after podtail is killed: its
// cleanup, registered later, runs first).
func tmpfsDataDir(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs data_dir: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// fill fills dir's file system until not a byte more fits, and returns the
// file that holds the space: removing it gives the space back. It tops the
// file up for 2 s: a write of podtail's under way when the space ran out
// may complete and free the page of the file it replaced, or fail and free
// its own.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for until := time.Now().Add(2 * time.Second); time.Now().Before(until); time.Sleep(10 * time.Millisecond) {
		for _, n := range []int{64 << 10, 4 << 10, 1} {
			for {
				if _, err := f.Write(buf[:n]); err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Fatalf("filling %s: %v", dir, err)
					}
					break
				}
			}
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 {
		t.Fatalf("%s still has %d blocks free after filling it", dir, st.Bavail)
	}
	return path
}

// data_dir full while podtail runs (a 4 MiB tmpfs, filled): the positions
// file cannot be written. podtail goes on reading and shipping, the file
// keeps, whole, what was last written, the failures show in
// podtail_positions_write_errors_total and podtail_positions_unsaved_seconds
// and in one log line, and once space returns the file catches up within a
// second or so. Then full again, podtail SIGKILLed and started again on the
// full data_dir: it starts, and from the positions last written it reads
// again what the killed podtail shipped meanwhile, which Loki already holds
// and which it does not send again. Every line arrives exactly once.
func TestDataDirFull(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "positions are saved by one store whatever the source; the sources' resume from them is TestKilledTenTimes's")
	dataDir := tmpfsDataDir(t, "4m")
	path := filepath.Join(dataDir, "positions.json")
	p := startPodtail(t, podtailOpts{dataDir: dataDir})
	const rate = 50
	w := startWriters(t, name("full"), 4, 65*rate, rate)
	sent := func() float64 { return p.metric("podtail_loki_entries_sent_total", "tenant", w.tenant) }
	time.Sleep(5 * time.Second)

	// Full while running.
	filler := fill(t, dataDir)
	_, before := readPositions(t, dataDir)
	sent0 := sent()
	const fullFor = 15 * time.Second
	time.Sleep(fullFor)
	_, after := readPositions(t, dataDir)
	shipped := sent() - sent0
	errs := p.metric("podtail_positions_write_errors_total")
	unsaved := p.metric("podtail_positions_unsaved_seconds")
	if !bytes.Equal(before, after) {
		t.Errorf("positions.json changed while data_dir was full")
	}
	if want := 0.8 * fullFor.Seconds() * 2 * 4 * rate; shipped < want {
		t.Errorf("%.0f entries shipped in the %s data_dir was full, want at least %.0f: reading stopped", shipped, fullFor, want)
	}
	if errs < 5 || errs > 2*fullFor.Seconds()+5 {
		t.Errorf("podtail_positions_write_errors_total = %.0f after %s full, want about one a second", errs, fullFor)
	}
	if unsaved < fullFor.Seconds()-1 {
		t.Errorf("podtail_positions_unsaved_seconds = %.1f after %s full", unsaved, fullFor)
	}
	logged := logEntries(p, "positions cannot be written")
	if len(logged) != 1 || logged[0]["file"] != path || logged[0]["level"] != "error" ||
		!strings.Contains(fmt.Sprint(logged[0]["error"]), "no space left on device") {
		t.Errorf("logged %d times, want once at error naming %s with ENOSPC: %v", len(logged), path, logged)
	}

	// Space comes back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	eventually(t, 5*time.Second, "positions written again", func() bool {
		b, err := os.ReadFile(path)
		return err == nil && !bytes.Equal(b, after) && p.metric("podtail_positions_unsaved_seconds") < 1
	})
	caughtUp := time.Since(freed)
	eventually(t, 2*time.Second, "the recovery logged", func() bool { return len(logEntries(p, "positions saved again")) == 1 })
	readPositions(t, dataDir)

	// Full again, and podtail killed: the file holds positions from before.
	time.Sleep(3 * time.Second)
	filler = fill(t, dataDir)
	time.Sleep(8 * time.Second)
	beforeKill := sent()
	p.signal(syscall.SIGKILL)
	<-p.done
	p = startPodtail(t, podtailOpts{dataDir: dataDir}) // on the full data_dir
	time.Sleep(3 * time.Second)
	if errs := p.metric("podtail_positions_write_errors_total"); errs == 0 {
		t.Error("the podtail started on a full data_dir wrote its positions")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	w.untilWritten()
	w.verify(t)
	stored := p.metric("podtail_loki_replayed_entries_total", "outcome", "stored")
	resent := p.metric("podtail_loki_replayed_entries_total", "outcome", "sent")
	t.Logf("data_dir full %s: %.0f entries shipped meanwhile, %.0f failed writes, unsaved %.1f s; positions written %.2f s after space came back; "+
		"full again and killed after %.0f entries: the next podtail, started on the full data_dir, found %.0f of the lines it read again in Loki (not sent again), %.0f not (sent)",
		fullFor, shipped, errs, unsaved, caughtUp.Seconds(), beforeKill, stored, resent)
	if stored == 0 {
		t.Error("the restart found nothing of what it read again in Loki: the kill while full went untested")
	}
	if d := p.metric("podtail_loki_entries_dropped_total"); d != 0 {
		t.Errorf("%.0f entries dropped", d)
	}
}

// The positions file damaged while podtail is down, four ways, each after
// a SIGKILL while apps write: cut short mid-write, garbage, empty, and JSON
// of another shape. Each time podtail starts, logs what it did naming the
// file, keeps the damaged one aside, and reads every source again from its
// start: lines written before the damage are checked with Loki and not sent
// again, lines written after are all sent. Every line arrives exactly once,
// among them those of a fast app whose lumberjack backups are read again
// too.
func TestPositionsFileDamaged(t *testing.T) {
	needBed(t)
	dataDir := t.TempDir()
	path := filepath.Join(dataDir, "positions.json")
	p := startPodtail(t, podtailOpts{dataDir: dataDir})
	const rate = 50
	slow := startWriters(t, name("damaged"), 4, 45*rate, rate)
	fast := startWriters(t, name("damagedfast"), 1, 45*400, 400) // a 1 MB file rotated every ~12 s
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 21))
	damages := []struct {
		name string
		of   func(whole []byte) []byte
	}{
		{"cut short mid-write", func(b []byte) []byte { return b[:len(b)/2] }},
		{"garbage", func([]byte) []byte {
			g := make([]byte, 512)
			for i := range g {
				g[i] = byte(rng.IntN(256))
			}
			return g
		}},
		{"empty", func([]byte) []byte { return nil }},
		{"another shape", func([]byte) []byte { return []byte(`[{"path":"/x","offset":1}]`) }},
	}
	var stored, resent float64
	replayed := func() {
		stored += p.metric("podtail_loki_replayed_entries_total", "outcome", "stored")
		resent += p.metric("podtail_loki_replayed_entries_total", "outcome", "sent")
	}
	var report []string
	for _, d := range damages {
		time.Sleep(8 * time.Second)
		replayed()
		p.signal(syscall.SIGKILL)
		<-p.done
		_, whole := readPositions(t, dataDir)
		bad := d.of(whole)
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		started := time.Now()
		p = startPodtail(t, podtailOpts{dataDir: dataDir})
		said := logEntries(p, "positions file damaged")
		if len(said) != 1 || said[0]["file"] != path || said[0]["level"] != "error" ||
			!strings.Contains(fmt.Sprint(said[0]["error"]), path) || !strings.Contains(fmt.Sprint(said[0]["error"]), "corrupt") {
			t.Fatalf("%s: podtail said %v, want one error naming %s as corrupt", d.name, said, path)
		}
		aside, _ := said[0]["kept_as"].(string)
		if kept, err := os.ReadFile(aside); err != nil || !bytes.Equal(kept, bad) {
			t.Errorf("%s: kept aside as %q: %v; not the damaged bytes", d.name, aside, err)
		}
		if n := p.metric("podtail_positions_corrupt_files_total"); n != 1 {
			t.Errorf("%s: podtail_positions_corrupt_files_total = %.0f", d.name, n)
		}
		report = append(report, fmt.Sprintf("%s (%d bytes, ready in %.1f s)", d.name, len(bad), time.Since(started).Seconds()))
	}
	slow.untilWritten()
	fast.untilWritten()
	slow.verify(t)
	fast.verify(t)
	replayed()
	if asides, _ := filepath.Glob(path + ".corrupt-*"); len(asides) != len(damages) {
		t.Errorf("%d damaged files kept aside, want %d: %v", len(asides), len(damages), asides)
	}
	t.Logf("positions file damaged 4 times: %s; read again after each: %.0f lines found in Loki (not sent again), %.0f not (sent)",
		strings.Join(report, ", "), stored, resent)
	if stored == 0 {
		t.Error("nothing read again was found in Loki: the recovery's replay check went untested")
	}
	if d := p.metric("podtail_loki_entries_dropped_total"); d != 0 {
		t.Errorf("%.0f entries dropped", d)
	}
}

// machineClock sets this machine's wall clock, and sets it right again from
// CLOCK_BOOTTIME, which no step moves: right = the time saved + the boot
// time passed since. A watchdog process (its own session, so that it
// outlives a test killed by its timeout) sets it right after a while,
// unless the test did.
type machineClock struct {
	wall0  time.Time
	boot0  time.Duration
	marker string
	dog    *exec.Cmd
}

func bootTime(t *testing.T) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

func saveClock(t *testing.T, watchdog time.Duration) *machineClock {
	t.Helper()
	c := &machineClock{wall0: time.Now().Round(0), boot0: bootTime(t), marker: filepath.Join(t.TempDir(), "clock-stepped")}
	if err := os.WriteFile(c.marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// /proc/uptime is CLOCK_BOOTTIME in seconds.
	script := fmt.Sprintf(`sleep %d; [ -e %q ] || exit 0; up=$(cut -d' ' -f1 /proc/uptime); `+
		`date -s "@$(awk -v w=%.6f -v u0=%.6f -v u="$up" 'BEGIN { printf "%%.2f", w + u - u0 }')"; rm -f %q`,
		int(watchdog.Seconds()), c.marker, float64(c.wall0.UnixNano())/1e9, c.boot0.Seconds(), c.marker)
	c.dog = exec.Command("sh", "-c", script)
	c.dog.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.dog.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.restore(t) })
	return c
}

// now is the right time.
func (c *machineClock) now(t *testing.T) time.Time { return c.wall0.Add(bootTime(t) - c.boot0) }

// set sets the machine's clock offset from the right time (0: right).
func (c *machineClock) set(t *testing.T, offset time.Duration) {
	t.Helper()
	ts := unix.NsecToTimespec(c.now(t).Add(offset).UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		t.Fatalf("setting the clock: %v", err)
	}
}

// restore sets the clock right and ends the watchdog, once.
func (c *machineClock) restore(t *testing.T) {
	if c.dog == nil {
		return
	}
	c.set(t, 0)
	_ = os.Remove(c.marker)
	_ = c.dog.Process.Kill()
	_ = c.dog.Wait()
	c.dog = nil
}

// otherBeds lists the processes of other test beds or benchmarks on this
// machine (go test binaries of e2e, Lokis, podtails, Promtails, Alloys not
// of this run): setting the clock back would break them.
func otherBeds() []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		base := filepath.Base(args[0])
		cmd := strings.Join(args, " ")
		switch {
		case pid == os.Getpid():
		case base == "e2e.test",
			(strings.HasPrefix(base, "loki") || base == "podtail" || base == "promtail" || base == "alloy") && !strings.Contains(cmd, bed.dir):
			out = append(out, fmt.Sprintf("%d %s", pid, cmd))
		}
	}
	return out
}

// ownKeys are the positions of tenant's sources among ps: its containers'
// (by ID, as Podman lists them) and the files of its log directories.
func ownKeys(t *testing.T, ps map[string]storedPosition, tenant string) map[string]storedPosition {
	t.Helper()
	ids := strings.Fields(podman(t, "ps", "-a", "-q", "--no-trunc", "--filter", "label=tenant="+tenant))
	out := map[string]storedPosition{}
	for k, p := range ps {
		id, isContainer := strings.CutPrefix(k, "container:")
		if (isContainer && slices.Contains(ids, id)) || (strings.HasPrefix(k, "file:") && strings.Contains(k, "/"+tenant+"/")) {
			out[k] = p
		}
	}
	return out
}

// The machine's clock set back an hour (as `date -s '-1 hour'` does) for 75 s
// while apps write, then set right (a step forward of an hour) for 75 s
// more: every line arrives exactly once, positions go on moving while the
// clock is behind, and neither step makes podtail forget a position. A
// forget pass runs in each of the two periods (a container started then
// makes the scheduler look, a minute after it last did); the position of a
// container removed while the clock was behind (last updated then, so an
// hour "old" once the clock is right) is still there after the second.
//
// The clock is the machine's: Podman, conmon, the apps and Loki see it too
// (lines are stamped an hour back; a time namespace moves only the
// monotonic clocks, and libfaketime cannot reach a static Go binary). It is
// set right from CLOCK_BOOTTIME within milliseconds, by the test or else by
// a watchdog. The test waits until no other test bed or benchmark runs on
// the machine (up to 10 minutes; it skips if one still does).
//
// It sets the clock of the machine it runs on, so it runs only when asked
// (PODTAIL_E2E_STEP_CLOCK=1, make e2e-clock), not in make test: CI's own
// timing, and anything else the machine runs, would see the step too.
func TestClockSteppedBack(t *testing.T) {
	needBed(t)
	if os.Getenv("PODTAIL_E2E_STEP_CLOCK") != "1" {
		t.Skip("sets the machine's clock back an hour: run with PODTAIL_E2E_STEP_CLOCK=1 (make e2e-clock)")
	}
	for deadline := time.Now().Add(10 * time.Minute); len(otherBeds()) > 0; time.Sleep(10 * time.Second) {
		if time.Now().After(deadline) {
			t.Skipf("other test beds run on this machine, which setting its clock back would break: %q", otherBeds())
		}
	}
	const hold = 75 * time.Second
	dataDir := t.TempDir()
	p := startPodtail(t, podtailOpts{dataDir: dataDir})
	start := time.Now() // the scheduler's first forget pass
	const rate = 50
	w := startWriters(t, name("clock"), 4, int((10*time.Second+2*hold+10*time.Second).Seconds())*rate, rate)
	w.over = 3 * time.Hour
	ticks := 0
	tick := func() { // a container comes and goes: the scheduler syncs, and forgets if a minute has passed
		ticks++
		runContainer(t, fmt.Sprintf("%s-%d", name("clocktick"), ticks), name("clocktick"), "tick", "v1", "true")
	}
	time.Sleep(10 * time.Second)
	live := ownKeys(t, func() map[string]storedPosition { ps, _ := readPositions(t, dataDir); return ps }(), w.tenant)
	if len(live) != 8 {
		t.Fatalf("%d positions of %s after 10 s, want 4 containers' and 4 files'", len(live), w.tenant)
	}

	clk := saveClock(t, 4*hold)
	clk.set(t, -time.Hour)
	stepped := time.Now()
	if off := time.Until(clk.now(t)); off < 59*time.Minute || off > 61*time.Minute {
		t.Fatalf("the clock is %s behind after date -s '-1 hour'", off)
	}
	// A container that writes, is read, and is removed while the clock is
	// behind: its position was last updated on the clock set back.
	gone := name("clockgone")
	id := runContainer(t, gone+"-c", gone, "gone", "v1", "sleep 1; "+printLoop(gone, 100, 10000, false))
	waitAcked(t, p, gone, 100, 30*time.Second)
	podman(t, "rm", "-f", "-t", "0", gone+"-c")
	key := "container:" + id
	time.Sleep(time.Until(start.Add(time.Minute + 5*time.Second)))
	tick() // a forget pass while the clock is behind
	time.Sleep(time.Until(stepped.Add(hold)))
	behindAll, _ := readPositions(t, dataDir)
	behind := ownKeys(t, behindAll, w.tenant)
	moved := 0
	for k, was := range live {
		now, ok := behind[k]
		if !ok {
			t.Errorf("%s forgotten while the clock was behind", k)
			continue
		}
		if now.Offset > was.Offset || now.Cursor != was.Cursor {
			moved++
		}
	}
	if moved < len(live) {
		t.Errorf("%d of %d positions moved while the clock was behind, want all", moved, len(live))
	}
	if u := behindAll[key].Updated; clk.now(t).Sub(u) < 59*time.Minute {
		t.Errorf("the removed container's position (%v) was updated at %v: not on the clock set back", behindAll[key], u)
	}

	clk.set(t, 0)
	right := time.Now()
	clk.restore(t)
	time.Sleep(65 * time.Second)
	tick() // a forget pass with the clock right: positions updated while it was behind look an hour old
	time.Sleep(hold - time.Since(right))
	afterAll, _ := readPositions(t, dataDir)
	after := ownKeys(t, afterAll, w.tenant)
	for k := range live {
		if _, ok := after[k]; !ok {
			t.Errorf("%s forgotten after the clock was set right", k)
		}
	}
	if _, ok := afterAll[key]; !ok {
		t.Errorf("the position of the container removed while the clock was behind was forgotten once the clock was set right: it looked an hour old")
	}
	w.untilWritten()
	w.verify(t)
	waitCountOver(t, gone, fmt.Sprintf(`{tenant=%q}`, gone), 100, 10*time.Second, 3*time.Hour)
	t.Logf("clock set back an hour for %.0f s, then right for %.0f s: %d entries, each once; %d of %d positions moved while it was behind; "+
		"podtail retried %.0f pushes (500: %.0f, 503: %.0f, network: %.0f), dropped %.0f entries",
		right.Sub(stepped).Seconds(), time.Since(right).Seconds(), w.total()+100, moved, len(live),
		p.metric("podtail_loki_push_retries_total"), p.metric("podtail_loki_push_retries_total", "reason", "500"),
		p.metric("podtail_loki_push_retries_total", "reason", "503"), p.metric("podtail_loki_push_retries_total", "reason", "network"),
		p.metric("podtail_loki_entries_dropped_total"))
	if d := p.metric("podtail_loki_entries_dropped_total"); d != 0 {
		t.Errorf("%.0f entries dropped", d)
	}
}
