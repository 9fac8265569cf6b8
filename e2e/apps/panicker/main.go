// Command panicker is an app that dies of a real Go panic, for the e2e tests
// of multi-line joining on container output: the runtime's own trace (the
// panic message, then every goroutine's stack) on stderr, after some JSON
// lines on stdout.
//
// With -line-delay it runs itself as a child and passes the child's stderr
// on a line at a time, that long apart, so that a test can kill podtail
// while the trace is half written. The trace is still the runtime's. With
// -interleave as well, it prints a JSON line on stdout after each line of
// the trace it passes on, so that the other stream moves on while a trace
// is being joined.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"sync"
	"time"
)

func main() {
	lines := flag.Int("lines", 5, "JSON lines on stdout before the panic")
	goroutines := flag.Int("goroutines", 3, "goroutines parked (their stacks are in the trace)")
	delay := flag.Duration("line-delay", 0, "pass the trace on a line at a time, this long apart")
	interleave := flag.Bool("interleave", false, "with -line-delay: a JSON line on stdout after each line of the trace")
	flag.Parse()
	if *delay > 0 {
		os.Exit(relay(*delay, *interleave))
	}
	debug.SetTraceback("all") // every goroutine's stack, as GOTRACEBACK=all
	for i := 1; i <= *lines; i++ {
		fmt.Printf("{\"level\":\"info\",\"msg\":\"before the panic\",\"n\":%d}\n", i)
	}
	for i := 0; i < *goroutines; i++ {
		go func() { select {} }()
	}
	time.Sleep(10 * time.Millisecond) // let them park, so the trace shows them
	var orders map[string]int
	orders["boom"]++ // assignment to entry in nil map: a real runtime panic
}

// relay runs this program without -line-delay and copies its stderr a line
// at a time, delay apart, each followed by a JSON line on stdout when
// interleave is set; it returns the child's exit status.
func relay(delay time.Duration, interleave bool) int {
	var args []string
	flag.Visit(func(f *flag.Flag) {
		if f.Name != "line-delay" && f.Name != "interleave" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	cmd := exec.Command(os.Args[0], args...)
	cmd.Stdout = os.Stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "panicker:", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "panicker:", err)
		return 1
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := bufio.NewReader(stderr)
		for k := 1; ; k++ {
			line, err := r.ReadString('\n')
			if line != "" {
				_, _ = io.WriteString(os.Stderr, line)
				if interleave {
					fmt.Printf("{\"level\":\"info\",\"msg\":\"trace line relayed\",\"line\":%d}\n", k)
				}
				time.Sleep(delay)
			}
			if err != nil {
				return
			}
		}
	}()
	wg.Wait()
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}
