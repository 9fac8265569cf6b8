package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// churn keeps about target short-lived containers running: each second it
// removes the ones that have exited and starts new ones (at most two a
// second) in their place. Each container prints "soak <name> <seq> ..."
// lines 1..n on stdout at rate lines/s (every third one also on stderr)
// and exits; its lifetime, and so n, is drawn from life. What a container
// wrote is known once it exited 0: the ledger expects its n lines then.
type churn struct {
	image, run string // image; the run's id, in names and the soak label
	tenants    []string
	apps       []string // app labels, spread over the containers
	rate       int      // lines per second per container
	target     int      // containers kept running
	life       [2]time.Duration
	rng        *rand.Rand

	mu       sync.Mutex
	next     int               // the next container's number
	live     map[string]member // container name → what it writes (started or starting)
	inFlight int               // podman runs under way
	running  int
	started  int
	removed  int
	failed   int // podman run failed
	nonZero  int // exited other than 0 (its lines checked for duplicates only)
	leftover int // still running when the drain timed out
	expect   []expectation
}

// maxInFlight bounds the podman runs under way at once.
const maxInFlight = 4

type member struct {
	tenant, short string
	lines         int
	stderr        bool
}

// expectation is a writer's count, handed to the ledger at the end.
type expectation struct {
	key   Key
	class string
	n     int
}

const (
	classChurnOut = "churn containers, stdout"
	classChurnErr = "churn containers, stderr"
)

func newChurn(image, run string, tenants []string, rate, target int, life [2]time.Duration) *churn {
	return &churn{image: image, run: run, tenants: tenants, apps: []string{"web", "worker", "cron"}, rate: rate,
		target: target, life: life, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 21)), live: map[string]member{}}
}

// label marks every container of this run, for listing and cleanup.
func (c *churn) label() string { return "podtail-soak=" + c.run }

// runUntil churns until the deadline, then stops starting containers and
// waits (at most drain) for the last ones to exit and be removed.
func (c *churn) runUntil(ctx context.Context, until time.Time, drain time.Duration) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		c.reap()
		now := time.Now()
		if now.Before(until) {
			// podman run takes seconds on a loaded machine: a few run at
			// once, each in its own goroutine.
			c.mu.Lock()
			n := min(2, c.target-len(c.live), maxInFlight-c.inFlight)
			c.inFlight += max(n, 0)
			c.mu.Unlock()
			for range n {
				go c.startOne()
			}
		} else {
			c.mu.Lock()
			left := len(c.live) + c.inFlight
			c.mu.Unlock()
			if left == 0 {
				return
			}
			if now.After(until.Add(drain)) {
				c.abandon()
				return
			}
		}
		select {
		case <-ctx.Done():
			c.abandon()
			return
		case <-t.C:
		}
	}
}

// startOne starts the next container.
func (c *churn) startOne() {
	c.mu.Lock()
	c.next++
	i := c.next
	life := c.life[0] + time.Duration(c.rng.Int64N(int64(c.life[1]-c.life[0])+1))
	c.mu.Unlock()
	m := member{tenant: c.tenants[i%len(c.tenants)], short: fmt.Sprintf("c%05d", i), stderr: i%3 == 0}
	m.lines = max(1, int(life.Seconds()*float64(c.rate)))
	name := c.name(m.short)
	// ~120 bytes a line, a modest app's; one echo is one write, so one line.
	body := fmt.Sprintf(`echo "soak %s $i pad-%s"`, m.short, strings.Repeat("x", 90))
	if m.stderr {
		body += fmt.Sprintf(`; echo "soak %s $i err" >&2`, m.short)
	}
	script := fmt.Sprintf(`i=1; while [ $i -le %d ]; do %s; i=$((i+1)); usleep %d; done`, m.lines, body, 1000000/c.rate)
	c.mu.Lock()
	c.live[name] = m
	c.mu.Unlock()
	out, err := exec.Command("podman", "run", "-d", "--name", name, "--label", c.label(), "--label", "soak-kind=churn",
		"--label", "tenant="+m.tenant, "--label", "app="+c.apps[i%len(c.apps)], "--label", "version=v1",
		c.image, "sh", "-c", script).CombinedOutput()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if err != nil {
		// It may have started and written some lines: they are checked
		// for duplicates only.
		c.failed++
		c.unknown(m)
		delete(c.live, name)
		_ = exec.Command("podman", "rm", "-f", "-t", "0", name).Run()
		fmt.Printf("soak: podman run %s: %v: %s\n", name, err, strings.TrimSpace(string(out)))
		return
	}
	c.started++
	c.running++
}

func (c *churn) name(short string) string { return "soak-" + c.run + "-" + short }

// reap removes the containers that have exited and records what they wrote.
func (c *churn) reap() {
	out, err := exec.Command("podman", "ps", "-a", "--filter", "label="+c.label(), "--filter", "label=soak-kind=churn",
		"--format", "{{.Names}}|{{.State}}|{{.ExitCode}}").Output()
	if err != nil {
		return // the next second's try
	}
	var gone []string
	running := 0
	codes := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// State: "exited" (Podman 5), "Exited (0) 3 seconds ago" (4.3).
		f := strings.Split(l, "|")
		if len(f) < 3 {
			continue
		}
		switch st := strings.ToLower(f[1]); {
		case strings.HasPrefix(st, "exited"), strings.HasPrefix(st, "stopped"):
			codes[f[0]], _ = strconv.Atoi(strings.TrimSpace(f[2]))
			gone = append(gone, f[0])
		default:
			running++
		}
	}
	if len(gone) > 0 {
		if out, err := exec.Command("podman", append([]string{"rm"}, gone...)...).CombinedOutput(); err != nil {
			fmt.Printf("soak: podman rm: %v: %s\n", err, strings.TrimSpace(string(out)))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = running
	for _, name := range gone {
		m, ok := c.live[name]
		if !ok {
			continue // removed already, its podman rm failed
		}
		delete(c.live, name)
		c.removed++
		if codes[name] != 0 {
			c.nonZero++
			c.unknown(m)
			continue
		}
		c.expect = append(c.expect, expectation{Key{m.tenant, "stdout", m.short}, classChurnOut, m.lines})
		if m.stderr {
			c.expect = append(c.expect, expectation{Key{m.tenant, "stderr", m.short}, classChurnErr, m.lines})
		}
	}
}

// unknown records a container whose count of lines is not known.
func (c *churn) unknown(m member) {
	c.expect = append(c.expect, expectation{Key{m.tenant, "stdout", m.short}, classChurnOut, Unknown})
	if m.stderr {
		c.expect = append(c.expect, expectation{Key{m.tenant, "stderr", m.short}, classChurnErr, Unknown})
	}
}

// abandon removes the containers still running (the drain timed out, or
// the soak was interrupted); their lines are checked for duplicates only.
func (c *churn) abandon() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, m := range c.live {
		_ = exec.Command("podman", "rm", "-f", "-t", "0", name).Run()
		c.leftover++
		c.unknown(m)
		delete(c.live, name)
	}
	c.running = 0
}

// runningNow is how many of the churn's containers run (for the sampler).
func (c *churn) runningNow() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// totals returns the churn's counts and expectations.
func (c *churn) totals() (started, removed, failed, nonZero, leftover int, expect []expectation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started, c.removed, c.failed, c.nonZero, c.leftover, append([]expectation(nil), c.expect...)
}
