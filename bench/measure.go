package main

import (
	"context"
	"fmt"
	"time"
)

// Result is one tool's figures in one scenario.
type Result struct {
	Tool         string
	Lines, Bytes int64 // the workload's
	Wall         time.Duration
	CPU          time.Duration // the tool's own (children included)
	ServiceCPU   time.Duration // the Podman service's, over the same time (container scenarios)
	PeakRSS      int64
	// FileRSS is the file-backed part of the resident memory at the end of
	// the run (RssFile: mostly the tool's own binary, whose pages the
	// kernel counts once touched), to tell the binary's size from the memory
	// the tool's work takes.
	FileRSS int64
	Sink    SinkStats
	Extra   int64 // entries beyond the workload, counted after completion
	Note    string
	// Failed, when set, says how the tool failed the run (a peer's failure
	// is a row of the table, not the end of the bench); the figures are
	// then those up to the failure.
	Failed string
	// Runs is how many runs median chose this one from, CPUMin and CPUMax
	// the least and most total CPU among them: the A/B section sets a
	// difference against the spread of the runs.
	Runs           int
	CPUMin, CPUMax time.Duration
}

// LinesPerSec and the rest derive the table's columns.
func (r Result) LinesPerSec() float64 { return float64(r.Lines) / r.Wall.Seconds() }
func (r Result) MBPerSec() float64    { return float64(r.Bytes) / 1e6 / r.Wall.Seconds() }
func (r Result) TotalCPU() time.Duration {
	return r.CPU + r.ServiceCPU
}
func (r Result) CPUPerMLines() float64 { return r.TotalCPU().Seconds() / float64(r.Lines) * 1e6 }
func (r Result) LinesPerCPU() float64  { return float64(r.Lines) / r.TotalCPU().Seconds() }

// runSpec says how to run one tool for one measurement.
type runSpec struct {
	tool   string
	expect int64 // entries the sink must count
	bytes  int64
	// start launches the tool pushing to sinkURL; dir is its fresh state.
	start func(sinkURL, dir string) (*proc, error)
	// servicePID, when set, is a process whose CPU over the run counts too.
	servicePID int
	// from, to: entry times the workload holds (zero: not checked).
	from, to time.Time
	stall    time.Duration // give up after this long without progress
	forward  string        // real Loki to pass pushes on to
	// during, when set, runs once the tool has started (e.g. a profile).
	during func(p *proc)
}

// measure runs one tool until its sink has counted every expected entry,
// then takes its CPU time and peak RSS from /proc, stops it, and checks
// for entries beyond the workload.
func measure(ctx context.Context, dir string, spec runSpec) (Result, error) {
	res := Result{Tool: spec.tool, Lines: spec.expect, Bytes: spec.bytes}
	sink, err := StartSink()
	if err != nil {
		return res, err
	}
	defer sink.Close()
	sink.From, sink.To, sink.Forward = spec.from, spec.to, spec.forward

	var svc0 time.Duration
	if spec.servicePID != 0 {
		if svc0, err = procCPU(spec.servicePID); err != nil {
			return res, err
		}
	}
	start := time.Now()
	p, err := spec.start(sink.URL, dir)
	if err != nil {
		return res, err
	}
	defer p.stop()
	if spec.during != nil {
		go spec.during(p)
	}

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := int64(-1), time.Now()
	for {
		n := sink.Entries()
		if n >= spec.expect {
			break
		}
		if n != last {
			last, lastAt = n, time.Now()
		}
		if time.Since(lastAt) > spec.stall {
			res.stopped(p, sink, start, spec.servicePID, svc0)
			return res, fmt.Errorf("%s: stuck at %d of %d entries for %s (sink %+v); its log %s ends:\n%s",
				spec.tool, n, spec.expect, spec.stall, sink.Stats(), p.log, p.tail())
		}
		if p.exited() {
			res.stopped(p, sink, start, spec.servicePID, svc0)
			return res, fmt.Errorf("%s exited at %d of %d entries; its log %s ends:\n%s", spec.tool, n, spec.expect, p.log, p.tail())
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
	}
	res.Wall = sink.Last().Sub(start)
	if res.CPU, err = procCPU(p.pid()); err != nil {
		return res, err
	}
	if res.PeakRSS, err = peakRSS(p.pid()); err != nil {
		return res, err
	}
	if res.FileRSS, err = fileRSS(p.pid()); err != nil {
		return res, err
	}
	if spec.servicePID != 0 {
		svc1, err := procCPU(spec.servicePID)
		if err != nil {
			return res, err
		}
		res.ServiceCPU = svc1 - svc0
	}
	// A resend or a split line would show up as entries beyond the
	// workload: give both tools more than a batch wait to send them.
	time.Sleep(2500 * time.Millisecond)
	res.Sink = sink.Stats()
	res.Extra = res.Sink.Entries - spec.expect
	return res, nil
}

// stopped fills in what a failed run got to: the sink's counts, the time,
// the Podman service's CPU, and while the tool still runs, its CPU and
// peak RSS.
func (r *Result) stopped(p *proc, sink *Sink, start time.Time, servicePID int, svc0 time.Duration) {
	r.Sink = sink.Stats()
	r.Wall = time.Since(start)
	if servicePID != 0 {
		if svc1, err := procCPU(servicePID); err == nil {
			r.ServiceCPU = svc1 - svc0
		}
	}
	if p.exited() {
		return
	}
	r.CPU, _ = procCPU(p.pid())
	r.PeakRSS, _ = peakRSS(p.pid())
	r.FileRSS, _ = fileRSS(p.pid())
}
