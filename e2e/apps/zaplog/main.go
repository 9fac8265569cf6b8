// Command zaplog is the seed's app in miniature, for podtail's e2e tests and
// demo: it writes zap production JSON through lumberjack (rotation by size,
// gzip backups), like the platform's apps, and says on stdout what it wrote.
//
//	zaplog -file /logs/beiluo_test777_v1.log -n 200000 [-rate 0] [-maxsize 1] [-echo PREFIX]
//
// With -echo it prints only PREFIX<n> for each line on stdout, so one
// container exercises both of podtail's sources with lines a test can count.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"
)

func main() {
	file := flag.String("file", "", "log file (lumberjack rotates it)")
	n := flag.Int("n", 1000, "lines to write")
	rate := flag.Int("rate", 0, "lines per second; 0 = as fast as possible")
	maxSize := flag.Int("maxsize", 1, "lumberjack MaxSize in MB")
	backups := flag.Int("backups", 3, "lumberjack MaxBackups")
	hold := flag.Duration("hold", 0, "stay alive this long after writing")
	echo := flag.String("echo", "", "also print PREFIX<n> on stdout for every line written")
	flag.Parse()
	if *file == "" {
		fmt.Fprintln(os.Stderr, "zaplog: -file is required")
		os.Exit(2)
	}
	lj := &lumberjack.Logger{Filename: *file, MaxSize: *maxSize, MaxBackups: *backups, MaxAge: 7, Compress: true}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(lj), zap.DebugLevel)
	log := zap.New(core, zap.AddCaller())

	start := time.Now()
	var tick <-chan time.Time
	if *rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(*rate))
		defer t.Stop()
		tick = t.C
	}
	if *echo == "" {
		fmt.Printf("zaplog: writing %d lines to %s\n", *n, *file)
	}
	out := bufio.NewWriterSize(os.Stdout, 4096)
	for i := 1; i <= *n; i++ {
		if tick != nil {
			<-tick
		}
		fields := []zap.Field{
			zap.Int("n", i),
			zap.String("request_id", fmt.Sprintf("req-%08d", i)),
			zap.String("path", "/api/v1/orders"),
			zap.Duration("took", time.Duration(i%1000)*time.Microsecond),
		}
		if *echo != "" {
			// One write per line, as an app's fmt.Println would do.
			out.WriteString(*echo)
			out.WriteString(strconv.Itoa(i))
			out.WriteByte('\n')
			_ = out.Flush()
		}
		switch {
		case i%10 == 0:
			log.Error("request failed", fields...)
		case i%17 == 0:
			log.Warn("request slow", fields...)
		case i%13 == 0:
			log.Debug("request detail", fields...)
		default:
			log.Info("request handled", fields...)
		}
	}
	_ = log.Sync()
	_ = lj.Close()
	took := time.Since(start)
	if *echo != "" {
		time.Sleep(*hold)
		return
	}
	fmt.Printf("zaplog: wrote %d lines in %s (%.0f lines/s)\n", *n, took.Round(time.Millisecond), float64(*n)/took.Seconds())
	time.Sleep(*hold)
}
