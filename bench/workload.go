package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Workload is a generated set of log files in the seed's layout,
// root/namespace/{user}/{app}/workplace/logs/{user}_{app}_{version}.log.
type Workload struct {
	Root  string
	Files []string
	Lines int64 // over all files
	Bytes int64 // file bytes, newlines included
	// Every line's ts lies in [TimeFrom, TimeTo]: the sink checks that each
	// tool took the entry's time from the line, not from the clock.
	TimeFrom, TimeTo time.Time
	MinLine, MaxLine int // shortest and longest line, newline excluded
}

// Shape says how many files of how many lines, spread over users (tenants),
// apps and versions.
type Shape struct {
	Count, Users, AppsPerUser, Versions, LinesPerFile int
}

func (s Shape) String() string {
	return fmt.Sprintf("%d files × %d lines", s.Count, s.LinesPerFile)
}

// shapeFor spreads files over users, apps and versions the way a platform
// would: a few tenants, many apps, one or two live versions per app.
func shapeFor(files, lines int) Shape {
	users := 10
	if files < users {
		users = files
	}
	versions := 1
	if files/users >= 100 {
		versions = 2
	}
	apps := (files + users*versions - 1) / (users * versions)
	return Shape{Count: files, Users: users, AppsPerUser: apps, Versions: versions, LinesPerFile: lines}
}

// lineStep is the ts distance between consecutive lines of one file.
const lineStep = 50 * time.Microsecond

// Generate writes the shape's files under root. Lines are zap production
// JSON (zap's own encoder, as the platform's apps write them), 200–260
// bytes, levels ≈ 80 % info, 6 % debug, 6 % warn, 8 % error, with ts
// starting at from and rising by lineStep within each file.
func Generate(root string, s Shape, from time.Time) (*Workload, error) {
	w := &Workload{Root: root, TimeFrom: from, TimeTo: from.Add(time.Duration(s.LinesPerFile) * lineStep), MinLine: 1 << 30}
	type job struct {
		path string
		seed uint64
	}
	var jobs []job
	for u := 0; u < s.Users; u++ {
		user := fmt.Sprintf("user%02d", u)
		for a := 0; a < s.AppsPerUser && len(jobs) < s.Count; a++ {
			app := fmt.Sprintf("app%03d", a)
			dir := filepath.Join(root, "namespace", user, app, "workplace", "logs")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("workload: %w", err)
			}
			for v := 1; v <= s.Versions && len(jobs) < s.Count; v++ {
				name := fmt.Sprintf("%s_%s_v%d.log", user, app, v)
				jobs = append(jobs, job{filepath.Join(dir, name), uint64(len(jobs) + 1)})
			}
		}
	}
	// Two writers: zap's encoder is the cost here, and the machine has two cores.
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan job)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				st, err := writeZapFile(j.path, s.LinesPerFile, from, j.seed)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				w.Files = append(w.Files, j.path)
				w.Lines += int64(s.LinesPerFile)
				w.Bytes += st.bytes
				w.MinLine = min(w.MinLine, st.min)
				w.MaxLine = max(w.MaxLine, st.max)
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return w, nil
}

type fileStats struct {
	bytes    int64
	min, max int
}

// Level shares, in percent: info, debug, warn, error.
var levelMix = [...]struct {
	level zapcore.Level
	upTo  int
}{{zapcore.InfoLevel, 80}, {zapcore.DebugLevel, 86}, {zapcore.WarnLevel, 92}, {zapcore.ErrorLevel, 100}}

var (
	methods = [...]string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	routes  = [...]string{"/api/v1/orders", "/api/v1/users", "/api/v2/inventory", "/api/v1/payments", "/healthz"}
	callers = [...]string{"orders/handler.go", "users/service.go", "inventory/repo.go", "payments/client.go"}
	errs    = [...]string{"deadline exceeded", "connection reset", "upstream 503"}
)

func writeZapFile(path string, n int, from time.Time, seed uint64) (fileStats, error) {
	f, err := os.Create(path)
	if err != nil {
		return fileStats{}, fmt.Errorf("workload: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	st := fileStats{min: 1 << 30}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	var line []byte
	for i := range n {
		line, err = zapLine(line[:0], enc, rng, i, from.Add(time.Duration(i)*lineStep))
		if err != nil {
			f.Close()
			return st, fmt.Errorf("workload: encode: %w", err)
		}
		st.bytes += int64(len(line))
		st.min = min(st.min, len(line)-1)
		st.max = max(st.max, len(line)-1)
		if _, err := bw.Write(line); err != nil {
			f.Close()
			return st, fmt.Errorf("workload: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return st, fmt.Errorf("workload: %w", err)
	}
	return st, f.Close()
}

// zapLine appends line i to dst as zap's production JSON encoder renders
// it, newline included.
func zapLine(dst []byte, enc zapcore.Encoder, rng *rand.Rand, i int, ts time.Time) ([]byte, error) {
	p := rng.IntN(100)
	lvl := zapcore.InfoLevel
	for _, m := range levelMix {
		if p < m.upTo {
			lvl = m.level
			break
		}
	}
	msg := map[zapcore.Level]string{
		zapcore.InfoLevel:  "request handled",
		zapcore.DebugLevel: "cache lookup finished",
		zapcore.WarnLevel:  "slow downstream call",
		zapcore.ErrorLevel: "request failed",
	}[lvl]
	ent := zapcore.Entry{
		Level:   lvl,
		Time:    ts,
		Message: msg,
		Caller:  zapcore.EntryCaller{Defined: true, File: "/src/app/" + callers[rng.IntN(len(callers))], Line: 20 + rng.IntN(400)},
	}
	fields := []zapcore.Field{
		zap.String("request_id", fmt.Sprintf("%012x", rng.Uint64()>>16)),
		zap.String("method", methods[rng.IntN(len(methods))]),
		zap.String("path", routes[rng.IntN(len(routes))]),
		zap.Int("status", 200),
		zap.Int("bytes", rng.IntN(200000)),
		zap.Duration("took", time.Duration(rng.IntN(2000000))*time.Microsecond/1000),
		zap.Int("seq", i),
	}
	if lvl == zapcore.ErrorLevel {
		fields[3] = zap.Int("status", 500)
		fields = append(fields, zap.String("error", errs[rng.IntN(len(errs))]))
	}
	buf, err := enc.EncodeEntry(ent, fields)
	if err != nil {
		return nil, err
	}
	dst = append(dst, buf.Bytes()...)
	buf.Free()
	return dst, nil
}
