package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The seed's apps: zaplog (e2e/apps/zaplog, zap JSON through lumberjack,
// 1 MB files, three gzipped backups) writing n lines at rate lines/s for
// the whole soak, so each rotates every ~20 s of its output and lumberjack
// deletes its older backups. Some run in containers with their logs
// directory bind-mounted from the host (podtail finds it through the
// container's mounts) and also echo each line's number on stdout; the
// others run on the host in the seed's layout under a files.static glob.
type apps struct {
	zaplog, image, run, dir string
	conts                   []zapApp
	hosts                   []zapApp
}

type zapApp struct {
	tenant, name, logs string
	n                  int
	cmd                *exec.Cmd // host apps
	done               chan error
}

const (
	classZapEcho = "zap apps in containers, stdout"
	classZapFile = "zap apps in containers, files (mount)"
	classZapHost = "zap apps on the host, files (files.static)"
)

// staticGlob is podtail's files.static glob for the host apps.
func (a *apps) staticGlob() string {
	return filepath.Join(a.dir, "static", "namespace", "*", "*", "workplace", "logs")
}

// start starts nc apps in containers and nh on the host, of n lines each.
func (a *apps) start(tenants []string, nc, nh, n, rate int) error {
	for i := range nc {
		z := zapApp{tenant: tenants[i%len(tenants)], name: fmt.Sprintf("zc%d", i), n: n}
		z.logs = filepath.Join(a.dir, "mounts", "namespace", z.tenant, z.name, "workplace", "logs")
		if err := os.MkdirAll(z.logs, 0o777); err != nil {
			return err
		}
		file := fmt.Sprintf("/app/workplace/logs/%s_%s_v1.log", z.tenant, z.name)
		// The exit status lands beside the logs (not a *.log: podtail does
		// not read it); the container then stays up, as the platform's apps
		// do, so that its logs directory stays collected.
		script := fmt.Sprintf("sleep 1; /zaplog -file %s -n %d -rate %d -maxsize 1 -backups 3 -echo %s-; echo $? > /app/workplace/logs/exit.status; exec sleep 1000000",
			file, n, rate, z.name)
		out, err := exec.Command("podman", "run", "-d", "--name", "soak-"+a.run+"-"+z.name, "--label", "podtail-soak="+a.run,
			"--label", "soak-kind=zap", "--label", "tenant="+z.tenant, "--label", "app="+z.name, "--label", "version=v1",
			"-v", a.zaplog+":/zaplog:ro", "-v", z.logs+":/app/workplace/logs", a.image, "sh", "-c", script).CombinedOutput()
		if err != nil {
			return fmt.Errorf("zap app %s: podman run: %v: %s", z.name, err, out)
		}
		a.conts = append(a.conts, z)
	}
	for i := range nh {
		z := zapApp{tenant: tenants[(i+1)%len(tenants)], name: fmt.Sprintf("zh%d", i), n: n, done: make(chan error, 1)}
		z.logs = filepath.Join(a.dir, "static", "namespace", z.tenant, z.name, "workplace", "logs")
		if err := os.MkdirAll(z.logs, 0o777); err != nil {
			return err
		}
		z.cmd = exec.Command(a.zaplog, "-file", filepath.Join(z.logs, fmt.Sprintf("%s_%s_v1.log", z.tenant, z.name)),
			"-n", strconv.Itoa(n), "-rate", strconv.Itoa(rate), "-maxsize", "1", "-backups", "3")
		if err := z.cmd.Start(); err != nil {
			return fmt.Errorf("zap app %s: %w", z.name, err)
		}
		go func(z zapApp) { z.done <- z.cmd.Wait() }(z)
		a.hosts = append(a.hosts, z)
	}
	return nil
}

// wait waits (until deadline) for every app to finish writing and returns
// what each wrote: n lines when it finished well, Unknown otherwise.
func (a *apps) wait(deadline time.Time) []expectation {
	var out []expectation
	for _, z := range a.conts {
		n := Unknown
		for {
			b, err := os.ReadFile(filepath.Join(z.logs, "exit.status"))
			if err == nil && strings.TrimSpace(string(b)) != "" {
				if strings.TrimSpace(string(b)) == "0" {
					n = z.n
				} else {
					fmt.Printf("soak: zap app %s exited %s\n", z.name, strings.TrimSpace(string(b)))
				}
				break
			}
			if time.Now().After(deadline) {
				fmt.Printf("soak: zap app %s not done writing by the deadline\n", z.name)
				break
			}
			time.Sleep(time.Second)
		}
		out = append(out, expectation{Key{z.tenant, "stdout", z.name}, classZapEcho, n},
			expectation{Key{z.tenant, "file", z.name}, classZapFile, n})
	}
	for _, z := range a.hosts {
		n := Unknown
		select {
		case err := <-z.done:
			if err == nil {
				n = z.n
			} else {
				fmt.Printf("soak: zap app %s: %v\n", z.name, err)
			}
		case <-time.After(time.Until(deadline)):
			fmt.Printf("soak: zap app %s not done writing by the deadline\n", z.name)
			_ = z.cmd.Process.Kill()
		}
		out = append(out, expectation{Key{z.tenant, "file", z.name}, classZapHost, n})
	}
	return out
}

// kill ends the host apps (the containers go with the run's cleanup).
func (a *apps) kill() {
	for _, z := range a.hosts {
		if z.cmd.ProcessState == nil {
			_ = z.cmd.Process.Kill()
		}
	}
}
