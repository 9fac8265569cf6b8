package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times: USER_HZ, 100 on
// every Linux build Go targets (sysconf is out of reach without cgo).
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user + system) of pid, of its children it
// has waited for, and of its live descendants, from /proc.
func procCPU(pid int) (time.Duration, error) {
	total, err := ownCPU(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range descendants(pid) {
		if d, err := ownCPU(c); err == nil { // a child may exit meanwhile
			total += d
		}
	}
	return total, nil
}

// ownCPU is utime+stime+cutime+cstime of one process.
func ownCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	f, err := statFields(b)
	if err != nil {
		return 0, fmt.Errorf("cpu of pid %d: %w", pid, err)
	}
	var ticks int64
	// Fields 14–17 of stat(5): utime, stime, cutime, cstime; f starts at field 3.
	for _, i := range []int{14, 15, 16, 17} {
		n, err := strconv.ParseInt(f[i-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu of pid %d: field %d: %w", pid, i, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// statFields splits /proc/<pid>/stat after the command name, which may
// itself hold spaces and parentheses: the first field returned is field 3.
func statFields(b []byte) ([]string, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("stat without ')': %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("stat has %d fields after the name", len(f))
	}
	return f, nil
}

// descendants lists the live processes below pid.
func descendants(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	parent := map[int]int{}
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		f, err := statFields(b)
		if err != nil {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		ppid, _ := strconv.Atoi(f[1]) // field 4
		parent[child] = ppid
	}
	var out []int
	for child := range parent {
		for p := parent[child]; p > 1; p = parent[p] {
			if p == pid {
				out = append(out, child)
				break
			}
		}
	}
	return out
}

// peakRSS is VmHWM of pid: the most resident memory it ever had, in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak rss of pid %d: %w", pid, err)
	}
	return statusKB(b, "VmHWM")
}

// fileRSS is RssFile of pid: its resident file-backed pages, in bytes.
func fileRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("file rss of pid %d: %w", pid, err)
	}
	return statusKB(b, "RssFile")
}

// statusKB reads a "Key:   123 kB" line of /proc/<pid>/status, in bytes.
func statusKB(b []byte, key string) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status line %q: want '<n> kB'", line)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status line %q: %w", line, err)
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("status has no %s line", key)
}
