package journal

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestLiveJournald follows the journal of a running journald (started by
// nobody here: run one, e.g. `mkdir -p /run/systemd/journal;
// /lib/systemd/systemd-journald &`, then PODTAIL_JOURNALD=1 go test -run
// Live). It writes 5,000 entries carrying a random MATCHME while a Reader
// follows them, asks journald to rotate half-way, and checks every entry
// arrives once and in order, waking only on Watcher notifications.
func TestLiveJournald(t *testing.T) {
	if os.Getenv("PODTAIL_JOURNALD") != "1" {
		t.Skip("set PODTAIL_JOURNALD=1 to test against the running journald")
	}
	const socket = "/run/systemd/journal/socket"
	const n = 5000
	dirs := []string{"/run/log/journal", "/var/log/journal"}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatalf("no journald listening: %v", err)
	}
	defer conn.Close()

	var raw [8]byte
	rand.Read(raw[:])
	tag := hex.EncodeToString(raw[:])
	w, err := NewWatcher(dirs)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wake, cancel := w.Subscribe()
	defer cancel()
	r := open(t, Options{Dirs: dirs, Match: "MATCHME=" + tag, Fields: []string{"MESSAGE", "SEQ"}})

	archives := func() int {
		m, _ := filepath.Glob("/run/log/journal/*/*@*.journal")
		v, _ := filepath.Glob("/var/log/journal/*/*@*.journal")
		return len(m) + len(v)
	}
	archivedBefore := archives()

	var sent [n]atomic.Int64
	writerErr := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if i == n/2 {
				if out, err := exec.Command("journalctl", "--rotate").CombinedOutput(); err != nil {
					writerErr <- fmt.Errorf("journalctl --rotate: %v: %s", err, out)
					return
				}
			}
			sent[i].Store(time.Now().UnixNano())
			msg := fmt.Sprintf("MESSAGE=podtail live test %d\nMATCHME=%s\nSEQ=%d\n", i, tag, i)
			if _, err := conn.Write([]byte(msg)); err != nil {
				writerErr <- err
				return
			}
		}
		writerErr <- nil
	}()

	var e Entry
	var lat []time.Duration
	wakeups := 0
	deadline := time.Now().Add(2 * time.Minute)
	for next := 0; next < n; {
		if time.Now().After(deadline) {
			t.Fatalf("timed out at entry %d", next)
		}
		ok, err := r.Next(&e)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if !ok {
			select {
			case <-wake:
				wakeups++
			case err := <-writerErr:
				if err != nil {
					t.Fatal(err)
				}
				writerErr <- nil // keep it for the next select
				select {
				case <-wake:
					wakeups++
				case <-time.After(10 * time.Second):
					t.Fatalf("no notification while waiting for entry %d", next)
				}
			}
			continue
		}
		v, _ := e.Field("SEQ")
		seq, err := strconv.Atoi(string(v))
		if err != nil || seq != next {
			t.Fatalf("entry %q (%s) where %d was due", v, e.Cursor, next)
		}
		lat = append(lat, time.Duration(time.Now().UnixNano()-sent[seq].Load()))
		next++
	}
	if err := <-writerErr; err != nil {
		t.Fatal(err)
	}
	// Nothing more, no duplicate.
	time.Sleep(300 * time.Millisecond)
	if ok, err := r.Next(&e); ok || err != nil {
		t.Fatalf("extra entry %s, %v", e.Cursor, err)
	}
	if g := r.Gaps(); g != 0 {
		t.Fatalf("%d gaps", g)
	}
	if archives() <= archivedBefore {
		t.Logf("warning: no new archived file: did the rotation happen? (%d before, %d after)", archivedBefore, archives())
	}
	slices.Sort(lat)
	t.Logf("%d entries, %d wake-ups; send-to-read latency p50 %v p99 %v max %v",
		n, wakeups, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])

	// One entry at a time: how long from the write to the wake-up, and
	// when the entry can be read (polling, to tell the two apart).
	var wakeLat, readLat []time.Duration
	for i := n; i < n+20; i++ {
		settle(wake)
		start := time.Now()
		msg := fmt.Sprintf("MESSAGE=podtail live test %d\nMATCHME=%s\nSEQ=%d\n", i, tag, i)
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		for {
			ok, err := r.Next(&e)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				readLat = append(readLat, time.Since(start))
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		select {
		case <-wake:
			wakeLat = append(wakeLat, time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatalf("no notification for entry %d", i)
		}
	}
	slices.Sort(wakeLat)
	slices.Sort(readLat)
	t.Logf("single entries: readable after p50 %v max %v; notified after p50 %v max %v",
		readLat[len(readLat)/2], readLat[len(readLat)-1], wakeLat[len(wakeLat)/2], wakeLat[len(wakeLat)-1])
}
