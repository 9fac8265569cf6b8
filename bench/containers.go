package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// pod runs the podman CLI (the test bed's CONTAINERS_CONF is inherited).
func pod(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "podman", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// containerSet is the containers one bench run made; only these are removed.
type containerSet struct {
	mu    sync.Mutex
	names []string
}

func (s *containerSet) add(name string) {
	s.mu.Lock()
	s.names = append(s.names, name)
	s.mu.Unlock()
}

// removeAll removes every container of the set, in chunks.
func (s *containerSet) removeAll() {
	s.mu.Lock()
	names := s.names
	s.names = nil
	s.mu.Unlock()
	for len(names) > 0 {
		n := min(len(names), 50)
		args := append([]string{"rm", "-f", "-t", "0"}, names[:n]...)
		if _, err := pod(context.Background(), args...); err != nil {
			logf("cleanup: %v", err)
		}
		names = names[n:]
	}
}

// containerLabels are the labels of bench container i: the run's own
// tenant label (so neither tool collects anyone else's containers on this
// shared machine), app and version.
func containerLabels(tenantLabel string, i int) []string {
	return []string{
		"--label", fmt.Sprintf("%s=tenant%02d", tenantLabel, i%10),
		"--label", fmt.Sprintf("app=app%03d", i),
		"--label", "version=v1",
	}
}

// startPrinters starts n containers that each print the lines file to
// stdout once and then stay up (Promtail's docker_sd only lists running
// containers).
func startPrinters(ctx context.Context, set *containerSet, image, prefix, tenantLabel, linesFile, logDriver string, n int) error {
	return startContainers(ctx, set, prefix, tenantLabel, logDriver, n, func(int) []string {
		return []string{"-v", linesFile + ":/in.log:ro", image, "sh", "-c", "cat /in.log; exec sleep 100000"}
	})
}

// startContainers starts n labelled containers detached, prefix-c000 on,
// three podman CLIs at a time (the CLI's own start-up is most of the time);
// tail(i) is container i's mounts, image and command.
func startContainers(ctx context.Context, set *containerSet, prefix, tenantLabel, logDriver string, n int, tail func(i int) []string) error {
	var wg sync.WaitGroup
	errc := make(chan error, n)
	next := make(chan int)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := fmt.Sprintf("%s-c%03d", prefix, i)
				set.add(name)
				args := []string{"run", "-d", "--name", name, "--log-driver", logDriver}
				args = append(args, containerLabels(tenantLabel, i)...)
				args = append(args, tail(i)...)
				if _, err := pod(ctx, args...); err != nil {
					errc <- err
				}
			}
		}()
	}
	for i := range n {
		select {
		case next <- i:
		case err := <-errc:
			close(next)
			wg.Wait()
			return err
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Latency is the discovery scenario's outcome for one tool.
type Latency struct {
	Tool          string
	Starts, Seen  int
	P50, P99, Max time.Duration
	CLI           time.Duration // median time `podman run -d` itself took
	Failed        string        // how a peer failed the scenario, when it did
}

// discovery starts n containers one after the other, interval apart, each
// printing one marked JSON line and then sleeping, while the tool runs;
// the latency of container i is from its `podman run -d` returning to the
// sink accepting its line (with -loki: Loki accepting it).
func discovery(ctx context.Context, set *containerSet, image, prefix, tenantLabel string, n int, interval time.Duration,
	forward string, start func(sinkURL, dir string) (*proc, error), ready func(p *proc) error, dir, tool string) (Latency, error) {
	lat := Latency{Tool: tool, Starts: n}
	sink, err := StartSink()
	if err != nil {
		return lat, err
	}
	defer sink.Close()
	sink.Forward = forward
	var mu sync.Mutex
	seen := map[string]time.Time{}
	sink.OnEntry = func(_, _, line string, at time.Time) {
		i := strings.Index(line, `"mark":"`)
		if i < 0 {
			return
		}
		mark := line[i+len(`"mark":"`):]
		if j := strings.IndexByte(mark, '"'); j >= 0 {
			mark = mark[:j]
		}
		mu.Lock()
		if _, ok := seen[mark]; !ok {
			seen[mark] = at
		}
		mu.Unlock()
	}
	p, err := start(sink.URL, dir)
	if err != nil {
		return lat, err
	}
	defer p.stop()
	if err := ready(p); err != nil {
		return lat, err
	}
	returned := make([]time.Time, n)
	var cli []time.Duration
	for i := range n {
		name := fmt.Sprintf("%s-d%03d", prefix, i)
		mark := fmt.Sprintf("%s-%d", prefix, i)
		set.add(name)
		ts := float64(time.Now().UnixNano()) / 1e9
		line := fmt.Sprintf(`{"level":"info","ts":%.6f,"caller":"app/main.go:12","msg":"started","mark":"%s"}`, ts, mark)
		args := []string{"run", "-d", "--name", name, "--log-driver", "k8s-file"}
		args = append(args, containerLabels(tenantLabel, i)...)
		args = append(args, image, "sh", "-c", "echo '"+line+"'; exec sleep 120")
		t0 := time.Now()
		if _, err := pod(ctx, args...); err != nil {
			return lat, err
		}
		returned[i] = time.Now()
		cli = append(cli, returned[i].Sub(t0))
		select {
		case <-ctx.Done():
			return lat, ctx.Err()
		case <-time.After(interval):
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var ds []time.Duration
	mu.Lock()
	for i := range n {
		if at, ok := seen[fmt.Sprintf("%s-%d", prefix, i)]; ok {
			ds = append(ds, at.Sub(returned[i]))
		}
	}
	mu.Unlock()
	lat.Seen = len(ds)
	if len(ds) == 0 {
		return lat, fmt.Errorf("%s: no container's line arrived; its log %s ends:\n%s", tool, p.log, p.tail())
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	sort.Slice(cli, func(i, j int) bool { return cli[i] < cli[j] })
	lat.P50, lat.P99, lat.Max = percentile(ds, 50), percentile(ds, 99), ds[len(ds)-1]
	lat.CLI = percentile(cli, 50)
	return lat, nil
}

// percentile is the nearest-rank percentile of sorted ds.
func percentile(ds []time.Duration, p int) time.Duration {
	k := (p*len(ds) + 99) / 100 // ceil(p/100 · n)
	return ds[max(k-1, 0)]
}

// waitReady polls url until it answers 200.
func waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := httpOK(url); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustGetenv(k string) (string, error) {
	v := os.Getenv(k)
	if v == "" {
		return "", fmt.Errorf("%s is not set: run through e2e/testbed/testbed.sh (make bench does)", k)
	}
	return v, nil
}
