package main

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// The A/B mode: -baseline names a second podtail binary (the previous
// commit's, say: make bench-ab builds it), which runs as the tool
// podtail-base wherever podtail runs, with podtail's configuration, inputs
// and sink, and as many runs, taken in turn with podtail's so that both
// meet the same machine. Comparing two separate bench runs instead would
// set a change of a few per cent against a machine whose speed wanders by a
// fifth from minute to minute.

// baseTool is the baseline's name in tables, logs and -tools.
const baseTool = "podtail-base"

// isPodtail says whether tool is one of the podtail binaries, which share
// a configuration and differ only in the binary run.
func isPodtail(tool string) bool { return tool == "podtail" || tool == baseTool }

// roundOrder is the order of the podtail binaries in round i of a file
// scenario: reversed every other round, so that neither always runs first
// (straight after the bound, or after a pause) and takes a position's
// advantage into every run.
func roundOrder(turn []string, i int) []string {
	if i%2 == 0 {
		return turn
	}
	r := slices.Clone(turn)
	slices.Reverse(r)
	return r
}

// baselineMachine adds the baseline's version to the machine lines, as
// the report gives podtail's: which two builds were compared.
func (rep *Report) baselineMachine(path string) {
	ver, _ := exec.Command(path, "version").CombinedOutput()
	rep.Baseline = fmt.Sprintf("%s (%s)", strings.TrimSpace(string(ver)), path)
	rep.Machine = append(rep.Machine, "podtail-base "+rep.Baseline)
}

// ab writes the A/B section: for each scenario both podtail binaries ran
// in, podtail against podtail-base and the ratio new/base.
func (rep *Report) ab(b *strings.Builder) {
	type row struct{ scenario, measure, pt, base, ratio string }
	var rows []row
	var spread []string
	for _, sc := range rep.Scenarios {
		var pt, base *Result
		for i := range sc.Results {
			switch sc.Results[i].Tool {
			case "podtail":
				pt = &sc.Results[i]
			case baseTool:
				base = &sc.Results[i]
			}
		}
		if pt == nil || base == nil {
			continue
		}
		rows = append(rows,
			row{sc.Name, "lines per CPU-s", num(pt.LinesPerCPU()), num(base.LinesPerCPU()), ratio(pt.LinesPerCPU(), base.LinesPerCPU())},
			row{sc.Name, "peak RSS MiB", fmt.Sprintf("%.1f", float64(pt.PeakRSS)/(1<<20)), fmt.Sprintf("%.1f", float64(base.PeakRSS)/(1<<20)),
				ratio(float64(pt.PeakRSS), float64(base.PeakRSS))})
		if sc.Bound != nil {
			bound := sc.Bound.LinesPerCPU()
			rows = append(rows, row{sc.Name, "share of the bound", fmt.Sprintf("%.1f %%", 100*pt.LinesPerCPU()/bound),
				fmt.Sprintf("%.1f %%", 100*base.LinesPerCPU()/bound), ratio(pt.LinesPerCPU(), base.LinesPerCPU())})
		}
		spread = append(spread, sc.Name+": "+runSpread(*pt, *base))
	}
	var pl, bl *Latency
	for i := range rep.Latencies {
		switch rep.Latencies[i].Tool {
		case "podtail":
			pl = &rep.Latencies[i]
		case baseTool:
			bl = &rep.Latencies[i]
		}
	}
	if pl != nil && bl != nil {
		ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
		rows = append(rows,
			row{"discovery", "p50 latency", ms(pl.P50), ms(bl.P50), ratio(float64(pl.P50), float64(bl.P50))},
			row{"discovery", "p99 latency", ms(pl.P99), ms(bl.P99), ratio(float64(pl.P99), float64(bl.P99))})
		if pl.Seen != pl.Starts || bl.Seen != bl.Starts {
			spread = append(spread, fmt.Sprintf("discovery: lines seen %d/%d (podtail), %d/%d (podtail-base)", pl.Seen, pl.Starts, bl.Seen, bl.Starts))
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n## A/B — podtail against podtail-base\n\n")
	fmt.Fprintf(b, "podtail-base is %s, run beside podtail on the same inputs and sink, in turn with its runs. "+
		"new/base above 1× is better for lines per CPU-s and the share of the bound, below 1× for peak RSS and latency; "+
		"in the container scenarios the CPU includes the Podman service's.\n\n", rep.Baseline)
	b.WriteString("| scenario | measure | podtail | podtail-base | new/base |\n|---|---|--:|--:|--:|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", r.scenario, r.measure, r.pt, r.base, r.ratio)
	}
	if len(spread) > 0 {
		b.WriteString("\n")
		for _, s := range spread {
			fmt.Fprintf(b, "- %s\n", s)
		}
	}
}

// runSpread sets the two medians' difference against the spread of the
// runs they were taken from: when the CPU ranges of the runs overlap, the
// difference is within what the machine varies by. Ranges apart are not
// proof either: two identical binaries' runs fall apart by chance, 1 time
// in 10 with 3 runs each (the order of 6 runs split 3 and 3), which the
// line says so that nobody reads it as more than it is.
func runSpread(pt, base Result) string {
	if pt.Runs < 2 || base.Runs < 2 {
		return "one run each (-runs applies to the file scenarios): no spread to set the difference against"
	}
	s := fmt.Sprintf("CPU of the runs: podtail %.2f–%.2f s, podtail-base %.2f–%.2f s", pt.CPUMin.Seconds(), pt.CPUMax.Seconds(),
		base.CPUMin.Seconds(), base.CPUMax.Seconds())
	chance := fmt.Sprintf(" (identical binaries' runs fall apart 1 time in %d with %d and %d runs)", apartOdds(pt.Runs, base.Runs), pt.Runs, base.Runs)
	switch {
	case pt.CPUMax < base.CPUMin:
		return s + ": apart, every podtail run took less CPU than every podtail-base run" + chance
	case base.CPUMax < pt.CPUMin:
		return s + ": apart, every podtail run took more CPU than every podtail-base run" + chance
	default:
		return s + ": overlapping, the difference is within the runs' spread"
	}
}

// apartOdds is n where identical binaries' a and b runs (every order of
// them as likely) have ranges apart, one side or the other, 1 time in n:
// C(a+b, a) orders, 2 of them apart.
func apartOdds(a, b int) int {
	c := 1
	for i := 1; i <= a; i++ {
		c = c * (b + i) / i // C(b+i, i), exact at every step
	}
	return c / 2
}
