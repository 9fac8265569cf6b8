package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/config"
)

// tuneRuntime sets the garbage collector's pace (gcPercent, unless GOGC is
// set) and, with memory_limit, Go's soft memory limit.
func tuneRuntime(cfg *config.Config, log *zap.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if cfg.MemoryLimit > 0 {
		setMemoryLimit(int64(cfg.MemoryLimit), int64(cfg.Loki.QueueBytes), log)
	}
}

// gcPercent is podtail's GOGC unless the environment sets one. With the
// queue and push bodies outside the heap, what is left on it is mostly
// state that lives as long as its file (streams, readers, positions), and
// little is allocated per line (~35 bytes), so letting the heap grow by
// 40 % of what is live rather than all of it costs few more collections.
// 50 rather than Go's 100, over 1,000 files: 8 -> 18 collections per
// million lines, 0-5 % of podtail's CPU, for 3-4 MiB less peak RSS (make
// bench: 52.8-53.2 -> 49.1-50.2 MiB); 40 rather than 50, with
// loki.queue_bytes 6 MiB rather than 8: 38.7-39.0 -> 36.7-36.9 MiB, for
// 6-7 % more CPU.
const gcPercent = 40

// setMemoryLimit makes Go's runtime keep podtail's resident memory under
// limit. The runtime's soft limit covers only the memory it manages; about
// 13 MiB of podtail's RSS (measured idle: 15.6 MiB, of which 13.2 MiB
// file-backed) are the binary's own pages, mapped from disk, and the Loki
// queue's entries (up to queueBytes) and push bodies (compressed: under a
// quarter of that with zap lines) are held outside the heap. So the runtime
// gets what is left after those, the pages measured now, and 2 MiB for the
// pages still to be touched; but never less than a quarter of limit.
func setMemoryLimit(limit, queueBytes int64, log *zap.Logger) {
	mapped := rssFile()
	goLimit := max(limit-mapped-queueBytes*5/4-2<<20, limit/4)
	debug.SetMemoryLimit(goLimit)
	log.Info("memory limit set", zap.Int64("memory_limit", limit), zap.Int64("file_backed_rss", mapped),
		zap.Int64("queue_bytes", queueBytes), zap.Int64("go_memory_limit", goLimit))
}

// rssFile is this process's resident file-backed memory (0 if unknown).
func rssFile() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "RssFile:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
