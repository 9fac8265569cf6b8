package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// The necessary-work bound: what any collector must do for the seed's
// pipeline, done by one tight loop on one core with nothing else: read the
// files, split lines, find zap's level and ts by hand, group entries into
// per-tenant batches of streams (labels from the path, once per file, plus
// the level), and when a batch reaches 1 MiB marshal the push request and
// snappy-compress it. No HTTP, no positions, no acknowledgements.

const boundBatchBytes = 1 << 20

// BoundResult is what the bound's process reports on stdout.
type BoundResult struct {
	Lines, Bytes, Batches, Compressed int64
	// PeakRSS is the process's own VmHWM: the parent cannot take it from
	// wait4's ru_maxrss, which also holds the parent's memory (Go starts
	// children with vfork, and exec keeps the larger high-water mark).
	PeakRSS int64
}

// boundBatch is one tenant's push request in the making.
type boundBatch struct {
	streams []push.Stream
	index   map[string]int
	bytes   int
	free    [][]push.Entry // emptied entry slices of sent batches, for reuse
}

// runBound runs the loop over every workload file under root.
func runBound(root string) (BoundResult, error) {
	var res BoundResult
	files, err := filepath.Glob(filepath.Join(root, "namespace", "*", "*", "workplace", "logs", "*.log"))
	if err != nil || len(files) == 0 {
		return res, fmt.Errorf("bound: no workload files under %s (%v)", root, err)
	}
	batches := map[string]*boundBatch{}
	var raw, comp []byte
	flush := func(b *boundBatch) error {
		req := push.PushRequest{Streams: b.streams}
		size := req.Size()
		if cap(raw) < size {
			raw = make([]byte, size)
		}
		n, err := req.MarshalToSizedBuffer(raw[:size])
		if err != nil {
			return fmt.Errorf("bound: marshal: %w", err)
		}
		comp = snappy.Encode(comp[:cap(comp)], raw[size-n:size])
		res.Batches++
		res.Compressed += int64(len(comp))
		// A sent batch's streams are gone (the next file of the tenant has
		// others); their entry slices are kept, emptied, for the next ones.
		for i := range b.streams {
			clear(b.streams[i].Entries)
			b.free = append(b.free, b.streams[i].Entries[:0])
		}
		b.streams = b.streams[:0]
		clear(b.index)
		b.bytes = 0
		return nil
	}
	buf := make([]byte, 1<<20)
	for _, path := range files {
		tenant, labels, err := boundLabels(root, path)
		if err != nil {
			return res, err
		}
		b := batches[tenant]
		if b == nil {
			b = &boundBatch{index: map[string]int{}}
			batches[tenant] = b
		}
		f, err := os.Open(path)
		if err != nil {
			return res, fmt.Errorf("bound: %w", err)
		}
		carry := 0
		for {
			n, rerr := f.Read(buf[carry:])
			data := buf[:carry+n]
			for {
				nl := bytes.IndexByte(data, '\n')
				if nl < 0 {
					break
				}
				line := data[:nl]
				data = data[nl+1:]
				res.Lines++
				res.Bytes += int64(nl + 1)
				lbl := labels[zapLevelIndex(line)]
				i, ok := b.index[lbl]
				if !ok {
					i = len(b.streams)
					b.index[lbl] = i
					var entries []push.Entry
					if n := len(b.free); n > 0 {
						entries, b.free = b.free[n-1], b.free[:n-1]
					}
					b.streams = append(b.streams, push.Stream{Labels: lbl, Entries: entries})
				}
				b.streams[i].Entries = append(b.streams[i].Entries, push.Entry{
					Timestamp: time.Unix(0, zapTS(line)),
					Line:      string(line),
				})
				b.bytes += len(line)
				if b.bytes >= boundBatchBytes {
					if err := flush(b); err != nil {
						f.Close()
						return res, err
					}
				}
			}
			carry = copy(buf, data)
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				f.Close()
				return res, fmt.Errorf("bound: %w", rerr)
			}
			if carry == len(buf) {
				f.Close()
				return res, fmt.Errorf("bound: %s: a line over %d bytes", path, len(buf))
			}
		}
		f.Close()
	}
	for _, b := range batches {
		if b.bytes > 0 {
			if err := flush(b); err != nil {
				return res, err
			}
		}
	}
	res.PeakRSS, err = peakRSS(os.Getpid())
	return res, err
}

var boundLevels = [...]string{"info", "debug", "warn", "error", "unknown"}

// boundLabels derives the tenant and the four level streams' label sets
// from a path of the seed's layout.
func boundLabels(root, path string) (string, [len(boundLevels)]string, error) {
	var out [len(boundLevels)]string
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return "", out, fmt.Errorf("bound: %w", err)
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) != 6 || parts[0] != "namespace" {
		return "", out, fmt.Errorf("bound: %s is not namespace/user/app/workplace/logs/file", rel)
	}
	tenant, app := parts[1], parts[2]
	name := strings.TrimSuffix(parts[5], ".log")
	version := name[strings.LastIndexByte(name, '_')+1:]
	for i, lvl := range boundLevels {
		out[i] = fmt.Sprintf(`{application=%q, level=%q, tenant=%q, version=%q}`, app, lvl, tenant, version)
	}
	return tenant, out, nil
}

// zapLevelIndex finds zap's "level" value by hand: an index into boundLevels.
func zapLevelIndex(line []byte) int {
	const key = `"level":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return len(boundLevels) - 1
	}
	v := line[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return len(boundLevels) - 1
	}
	switch string(v[:j]) { // no allocation: the compiler compares in place
	case "info":
		return 0
	case "debug":
		return 1
	case "warn":
		return 2
	case "error":
		return 3
	}
	return len(boundLevels) - 1
}

// zapTS reads zap's epoch-seconds "ts" (e.g. 1732500000.1234567) by hand,
// exactly, as nanoseconds; 0 when absent.
func zapTS(line []byte) int64 {
	const key = `"ts":`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return 0
	}
	v := line[i+len(key):]
	var sec, frac int64
	k := 0
	for ; k < len(v) && v[k] >= '0' && v[k] <= '9'; k++ {
		sec = sec*10 + int64(v[k]-'0')
	}
	digits := 0
	if k < len(v) && v[k] == '.' {
		for k++; k < len(v) && v[k] >= '0' && v[k] <= '9'; k++ {
			if digits < 9 {
				frac = frac*10 + int64(v[k]-'0')
				digits++
			}
		}
	}
	for ; digits < 9; digits++ {
		frac *= 10
	}
	return sec*1e9 + frac
}

// measureBound runs the bound in a process of its own, this program with
// -internal-bound and GOMAXPROCS=1, so its CPU time is measured like the
// tools' and nothing else of the bench is in it.
func measureBound(root string, want int64) (Result, error) {
	self, err := os.Executable()
	if err != nil {
		return Result{}, err
	}
	cmd := exec.Command(self, "-internal-bound", root)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("bound: %w: %s", err, errb.String())
	}
	wall := time.Since(start)
	var br BoundResult
	if err := json.Unmarshal(out.Bytes(), &br); err != nil {
		return Result{}, fmt.Errorf("bound: its answer %q: %w", out.String(), err)
	}
	if br.Lines != want {
		return Result{}, fmt.Errorf("bound: read %d lines, the workload has %d", br.Lines, want)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return Result{}, errors.New("bound: no rusage")
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return Result{Tool: "bound", Lines: br.Lines, Bytes: br.Bytes, Wall: wall, CPU: cpu, PeakRSS: br.PeakRSS,
		Note: fmt.Sprintf("%d batches, %.1f MB snappy", br.Batches, float64(br.Compressed)/1e6)}, nil
}
