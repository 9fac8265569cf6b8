package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// profilePodtail runs podtail once more on the same files with
// server.pprof, takes a CPU profile over (about) the time the measured run
// took, and keeps pprof's top entries, by flat and by cumulative time.
func (b *bench) profilePodtail(ctx context.Context, sc *Scenario, spec runSpec, glob string) error {
	var wall time.Duration
	for _, r := range sc.Results {
		if r.Tool == "podtail" {
			wall = r.Wall
		}
	}
	secs := max(1, int(wall.Seconds()))
	dir, err := b.toolDir(sc.Name, "podtail-profile")
	if err != nil {
		return err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort())
	spec.start = b.startPodtail("podtail", podtailConfig{StaticGlob: glob, Listen: listen, Pprof: true})
	profile := filepath.Join(dir, "podtail.cpu.pprof")
	done := make(chan error, 1)
	spec.during = func(p *proc) {
		done <- fetchProfile(ctx, "http://"+listen+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), profile)
	}
	logf("%s: profiling podtail for %d s (a separate run)", sc.Name, secs)
	if _, err := measure(ctx, dir, spec); err != nil {
		return err
	}
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-time.After(30 * time.Second):
		return errors.New("the profile did not arrive")
	}
	sc.Profile = profile
	sc.Top, err = pprofTop(ctx, b.podtail, profile)
	return err
}

// pprofTop is pprof's top entries of a profile of bin, by flat and by
// cumulative time.
func pprofTop(ctx context.Context, bin, profile string) ([]string, error) {
	var top []string
	for _, by := range []string{"flat", "cum"} {
		args := []string{"tool", "pprof", "-top", "-nodecount=15"}
		if by == "cum" {
			args = append(args, "-cum")
		}
		out, err := exec.CommandContext(ctx, "go", append(args, bin, profile)...).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof: %w: %s", err, out)
		}
		top = append(top, fmt.Sprintf("by %s:\n%s", by, out))
	}
	return top, nil
}

func fetchProfile(ctx context.Context, url, path string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("profile: %w", err)
			}
			time.Sleep(20 * time.Millisecond) // podtail is still starting
			continue
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("profile: HTTP %d: %s", resp.StatusCode, body)
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return fmt.Errorf("profile: %w", err)
		}
		return f.Close()
	}
}
