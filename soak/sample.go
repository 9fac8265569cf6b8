package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sample is what the soak measures of podtail every sampleEvery. A measure
// that could not be read (podtail restarting, Loki down) is NaN.
type Sample struct {
	At         time.Duration // since the churn began
	PID        int
	RSS        float64 // MiB, VmRSS
	Goroutines float64 // go_goroutines from /metrics
	FDs        float64 // entries of /proc/PID/fd
	Deleted    float64 // of which files already deleted (removed containers' logs held open)
	Positions  float64 // KiB, data_dir/positions.json
	Watches    float64 // inotify watches: "inotify wd:" lines over /proc/PID/fdinfo/*
	Lag        float64 // seconds from the newest container line in Loki to now (worst tenant)
	Running    float64 // the soak's containers running
}

const sampleEvery = 10 * time.Second

// sampler takes a Sample every sampleEvery until its context ends.
type sampler struct {
	p       *podtail
	lokiURL string
	tenants []string
	running func() int
	start   time.Time
	// lagUntil ends the freshness spot-check: once the churn stops, no
	// new lines come, and the newest one only grows old.
	lagUntil time.Duration

	mu      sync.Mutex
	samples []Sample
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		s.take(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// take measures once and keeps the sample.
func (s *sampler) take(ctx context.Context) Sample {
	nan := math.NaN()
	x := Sample{At: time.Since(s.start), RSS: nan, Goroutines: nan, FDs: nan, Deleted: nan, Positions: nan, Watches: nan, Lag: nan}
	x.Running = float64(s.running())
	if fi, err := os.Stat(filepath.Join(s.p.dataDir, "positions.json")); err == nil {
		x.Positions = float64(fi.Size()) / 1024
	}
	if pid := s.p.pid(); pid > 0 {
		x.PID = pid
		if kb, err := statusKB(pid, "VmRSS"); err == nil {
			x.RSS = float64(kb) / 1024
		}
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			x.FDs = float64(len(fds))
			x.Deleted = 0
			for _, fd := range fds {
				if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasSuffix(l, " (deleted)") {
					x.Deleted++
				}
			}
		}
		if w, err := inotifyWatches(pid); err == nil {
			x.Watches = float64(w)
		}
		if g, ok := s.p.metrics("go_goroutines")["go_goroutines"]; ok {
			x.Goroutines = g
		}
	}
	// Freshness: the soak's containers print continuously, each line
	// stamped by conmon (or journald) when written, so the newest one in
	// Loki is as old as delivery is slow.
	for _, tenant := range s.tenants {
		if x.At > s.lagUntil {
			break
		}
		ts, err := newest(ctx, s.lokiURL, tenant, fmt.Sprintf(`{tenant=%q, stream="stdout"}`, tenant), 10*time.Minute)
		if err != nil || ts.IsZero() {
			continue
		}
		lag := time.Since(ts).Seconds()
		if math.IsNaN(x.Lag) || lag > x.Lag {
			x.Lag = lag
		}
	}
	s.mu.Lock()
	s.samples = append(s.samples, x)
	s.mu.Unlock()
	return x
}

// all returns the samples taken so far.
func (s *sampler) all() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...)
}

// statusKB reads a "Key: N kB" line of /proc/PID/status.
func statusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// inotifyWatches counts the watches of every inotify descriptor pid holds:
// the kernel lists each as an "inotify wd:" line of the descriptor's fdinfo.
func inotifyWatches(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "inotify wd:") {
				n++
			}
		}
		f.Close()
	}
	return n, nil
}

// window is the median of a measure over the samples with At in (from, to]:
// a single sample is one garbage collection's luck.
func window(ss []Sample, from, to time.Duration, m func(Sample) float64) float64 {
	var v []float64
	for _, s := range ss {
		if s.At > from && s.At <= to && !math.IsNaN(m(s)) {
			v = append(v, m(s))
		}
	}
	return median(v)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
