package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is the whole run.
type Report struct {
	Started, Finished time.Time
	Machine           []string
	PromtailBuild     time.Duration
	AlloyBuild        time.Duration
	Baseline          string // podtail-base's version and path, with -baseline
	Scenarios         []*Scenario
	Latencies         []Latency
	Idle              *Idle // the idle scenario's (idle.go)
	Notes             []string
}

// Scenario is one scenario's results.
type Scenario struct {
	Name, Title string
	Containers  bool
	Results     []Result
	Bound       *Result
	Profile     string   // pprof file of podtail, when taken
	Top         []string // pprof -top output, by flat then by cum
}

func (rep *Report) machine(podtail, alloy string) {
	load, _ := os.ReadFile("/proc/loadavg")
	ver, _ := exec.Command(podtail, "version").CombinedOutput()
	pv, _ := exec.Command("podman", "--version").CombinedOutput()
	tools := "podtail " + strings.TrimSpace(string(ver)) + "; Promtail from Loki v3.7.8's clients/pkg/promtail (bench/promtailbuild)"
	if alloy != "" {
		// "alloy, version v1.19.2 (branch: , revision: unknown)"
		av, _ := exec.Command(alloy, "--version").CombinedOutput()
		v, _, _ := strings.Cut(strings.TrimPrefix(firstLine(string(av)), "alloy, version "), " (")
		tools += "; Grafana Alloy " + strings.TrimSpace(v) + " (bench/alloybuild: github.com/grafana/alloy's flowcmd)"
	}
	rep.Machine = []string{
		fmt.Sprintf("%d CPUs, %s, load average at start %s", runtime.NumCPU(), runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " ")),
		tools + "; " + strings.TrimSpace(string(pv)),
	}
}

// peerNames are the peers' names in the report, by tool.
var peerNames = map[string]string{"promtail": "Promtail", "alloy": "Alloy"}

// peers are the peers that ran in any scenario, in the order tools run.
func (rep *Report) peers() []string {
	seen := map[string]bool{}
	for _, sc := range rep.Scenarios {
		for _, r := range sc.Results {
			seen[r.Tool] = true
		}
	}
	for _, l := range rep.Latencies {
		seen[l.Tool] = true
	}
	if rep.Idle != nil {
		for _, r := range rep.Idle.Rows {
			seen[r.Tool] = true
		}
	}
	var ps []string
	for _, t := range []string{"promtail", "alloy"} {
		if seen[t] {
			ps = append(ps, t)
		}
	}
	return ps
}

// cell makes text safe for a markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

func (r Result) brief() string {
	return fmt.Sprintf("%d lines in %.2f s, CPU %.2f s (+service %.2f s), %.0f lines/CPU-s, peak RSS %.1f MiB, sink %+v, extra %d",
		r.Lines, r.Wall.Seconds(), r.CPU.Seconds(), r.ServiceCPU.Seconds(), r.LinesPerCPU(), float64(r.PeakRSS)/(1<<20), r.Sink, r.Extra)
}

// checks says whether the sink saw the workload exactly, with the pipeline applied.
func (r Result) checks() string {
	if r.Tool == "bound" {
		return r.Note
	}
	if r.Failed != "" {
		return cell(fmt.Sprintf("FAILED: %s (the sink: %d of %d entries in %d pushes)", r.Failed, r.Sink.Entries, r.Lines, r.Sink.Requests))
	}
	var bad []string
	add := func(n int64, what string) {
		if n != 0 {
			bad = append(bad, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Extra, "extra entries")
	add(r.Sink.Untimed, "not timed from ts")
	add(r.Sink.Unleveled, "without level label")
	add(r.Sink.NoTenant, "without tenant")
	add(r.Sink.Failed, "failed pushes")
	// The workload's bytes hold a newline per line, the entries' lines none:
	// any other difference is text a tool added to or cut from the lines.
	if d := r.Sink.Bytes - (r.Bytes - r.Lines); d != 0 && r.Extra == 0 {
		bad = append(bad, fmt.Sprintf("%+d bytes in the lines (text added or lost)", d))
	}
	s := fmt.Sprintf("%d streams, %d tenants, %d pushes", r.Sink.Streams, r.Sink.Tenants, r.Sink.Requests)
	if r.Note != "" {
		s += "; " + r.Note
	}
	if len(bad) == 0 {
		return "ok: " + s
	}
	return "CHECK: " + strings.Join(bad, ", ") + "; " + s + "; e.g. " + strings.Join(r.Sink.Samples, "; ")
}

func num(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	if f < 100 {
		s = fmt.Sprintf("%.1f", f)
	}
	// thousands separators
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func (rep *Report) String() string {
	var b strings.Builder
	title := "podtail"
	var names []string
	for _, p := range rep.peers() {
		names = append(names, peerNames[p])
	}
	if len(names) > 0 {
		title += " vs " + strings.Join(names, " and ")
	}
	fmt.Fprintf(&b, "\n# %s, %s\n\n", title, rep.Started.Format("2006-01-02 15:04"))
	for _, m := range rep.Machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	if rep.PromtailBuild > time.Second {
		fmt.Fprintf(&b, "- Promtail was built in this run (%s)\n", rep.PromtailBuild.Round(time.Second))
	}
	if rep.AlloyBuild > time.Second {
		fmt.Fprintf(&b, "- Alloy was built in this run (%s)\n", rep.AlloyBuild.Round(time.Second))
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	b.WriteString("- lines/s and MB/s: workload lines (bytes with newlines, MB = 10⁶ B) over wall time from the tool's start to the sink's last push; CPU: utime+stime from /proc (the Podman service's added in the container scenario); peak RSS: VmHWM, and in brackets the part of the resident memory that is file-backed at the end (RssFile: the tool's binary pages)\n")

	for _, sc := range rep.Scenarios {
		fmt.Fprintf(&b, "\n## %s — %s\n\n", sc.Name, sc.Title)
		if sc.Containers {
			b.WriteString("| tool | wall s | lines/s | MB/s | tool CPU s | Podman CPU s | CPU s per M lines | lines per CPU-s | peak RSS MiB (binary) | checks |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
		} else {
			b.WriteString("| tool | wall s | lines/s | MB/s | CPU s | CPU s per M lines | lines per CPU-s | peak RSS MiB (binary) | checks |\n|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
		}
		rows := append([]Result(nil), sc.Results...)
		if sc.Bound != nil {
			rows = append(rows, *sc.Bound)
		}
		for _, r := range rows {
			name := r.Tool
			if name == "bound" {
				name = "necessary-work bound (1 core)"
			}
			if r.Failed != "" { // the wall time and resources up to the failure; no rates
				if sc.Containers {
					fmt.Fprintf(&b, "| %s | %.2f | — | — | %.2f | %.2f | — | — | %s | %s |\n", name, r.Wall.Seconds(), r.CPU.Seconds(), r.ServiceCPU.Seconds(), r.rss(), r.checks())
				} else {
					fmt.Fprintf(&b, "| %s | %.2f | — | — | %.2f | — | — | %s | %s |\n", name, r.Wall.Seconds(), r.CPU.Seconds(), r.rss(), r.checks())
				}
				continue
			}
			if sc.Containers {
				fmt.Fprintf(&b, "| %s | %.2f | %s | %.1f | %.2f | %.2f | %.2f | %s | %s | %s |\n", name, r.Wall.Seconds(), num(r.LinesPerSec()), r.MBPerSec(),
					r.CPU.Seconds(), r.ServiceCPU.Seconds(), r.CPUPerMLines(), num(r.LinesPerCPU()), r.rss(), r.checks())
			} else {
				fmt.Fprintf(&b, "| %s | %.2f | %s | %.1f | %.2f | %.2f | %s | %s | %s |\n", name, r.Wall.Seconds(), num(r.LinesPerSec()), r.MBPerSec(),
					r.CPU.Seconds(), r.CPUPerMLines(), num(r.LinesPerCPU()), r.rss(), r.checks())
			}
		}
		if pt := sc.result("podtail"); pt != nil {
			sep := "\n"
			for _, peer := range []string{"promtail", "alloy"} {
				if pr := sc.result(peer); pr != nil {
					fmt.Fprintf(&b, "%spodtail ÷ %s: lines/s %s, lines per CPU-s %s, CPU per line %s, peak RSS %s\n", sep, peerNames[peer],
						ratio(pt.LinesPerSec(), pr.LinesPerSec()), ratio(pt.LinesPerCPU(), pr.LinesPerCPU()),
						ratio(pt.CPUPerMLines(), pr.CPUPerMLines()), ratio(float64(pt.PeakRSS), float64(pr.PeakRSS)))
					sep = ""
				}
			}
		}
		if sc.Bound != nil {
			b.WriteString("\n")
			for _, r := range sc.Results {
				if r.Failed == "" {
					fmt.Fprintf(&b, "%s reaches %.1f %% of the bound's lines per CPU-s\n", r.Tool, 100*r.LinesPerCPU()/sc.Bound.LinesPerCPU())
				}
			}
		}
		if len(sc.Top) > 0 {
			fmt.Fprintf(&b, "\n### CPU profile of podtail (%s), top 15\n\n```\n", sc.Profile)
			for _, t := range sc.Top {
				b.WriteString(t)
				b.WriteString("\n")
			}
			b.WriteString("```\n")
		}
	}
	if len(rep.Latencies) > 0 {
		b.WriteString("\n## discovery — `podman run -d` returning → the container's first line accepted by the sink\n\n")
		b.WriteString("| tool | starts | lines seen | p50 | p99 | max | `podman run -d` itself (p50) |\n|---|--:|--:|--:|--:|--:|--:|\n")
		var failed []string
		for _, l := range rep.Latencies {
			if l.Failed != "" {
				fmt.Fprintf(&b, "| %s | %d | %d | — | — | — | — |\n", l.Tool, l.Starts, l.Seen)
				failed = append(failed, fmt.Sprintf("%s FAILED: %s", l.Tool, l.Failed))
				continue
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s |\n", l.Tool, l.Starts, l.Seen,
				l.P50.Round(time.Millisecond), l.P99.Round(time.Millisecond), l.Max.Round(time.Millisecond), l.CLI.Round(time.Millisecond))
		}
		b.WriteString("\nPromtail's docker_sd and Alloy's discovery.docker refresh every 5s (Promtail's documented example); each tool batches for up to its default batch_wait (podtail 500ms, Promtail and Alloy 1s).\n")
		for _, f := range failed {
			fmt.Fprintf(&b, "\n%s\n", f)
		}
	}
	if rep.Idle != nil {
		rep.Idle.section(&b)
	}
	rep.ab(&b)
	rep.summary(&b)
	rep.targets(&b)
	rep.targets21(&b)
	if !rep.Finished.IsZero() {
		load, _ := os.ReadFile("/proc/loadavg")
		fmt.Fprintf(&b, "\nTook %s; load average at the end %s.\n", rep.Finished.Sub(rep.Started).Round(time.Second), strings.Join(strings.Fields(string(load))[:3], " "))
	}
	return b.String()
}

// targets compares the run with issue 8's targets, where it measured them.
func (rep *Report) targets(b *strings.Builder) {
	find := func(scenario, tool string) (*Scenario, *Result) {
		for _, sc := range rep.Scenarios {
			if sc.Name != scenario {
				continue
			}
			for i := range sc.Results {
				if sc.Results[i].Tool == tool {
					return sc, &sc.Results[i]
				}
			}
		}
		return nil, nil
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	var lines []string
	sc, pt := find("throughput", "podtail")
	if _, pr := find("throughput", "promtail"); pt != nil && pr != nil {
		x := pt.LinesPerCPU() / pr.LinesPerCPU()
		lines = append(lines, fmt.Sprintf("seed pipeline: %.1f× Promtail's lines per CPU-second (≥ 10×): %s", x, verdict(x >= 10)))
	}
	if pt != nil && sc.Bound != nil {
		f := pt.LinesPerCPU() / sc.Bound.LinesPerCPU()
		lines = append(lines, fmt.Sprintf("seed pipeline: %.0f %% of the necessary-work bound (≥ 50 %%): %s", 100*f, verdict(f >= 0.5)))
	}
	_, mt := find("manyfiles", "podtail")
	if _, mr := find("manyfiles", "promtail"); mt != nil && mr != nil {
		f := float64(mt.PeakRSS) / float64(mr.PeakRSS)
		mb := float64(mt.PeakRSS) / 1e6
		lines = append(lines, fmt.Sprintf("1,000 files: peak RSS %.0f MB (%.0f MB of it binary pages), %.2f× Promtail's (≤ 40 MB and ≤ 0.25×): %s",
			mb, float64(mt.FileRSS)/1e6, f, verdict(mb <= 40 && f <= 0.25)))
	}
	_, ct := find("containers", "podtail")
	if _, cr := find("containers", "promtail"); ct != nil && cr != nil {
		f := ct.CPUPerMLines() / cr.CPUPerMLines()
		lines = append(lines, fmt.Sprintf("containers: podtail + Podman CPU per line %.2f× Promtail + Podman's (≤ 0.33×): %s", f, verdict(f <= 1.0/3)))
	}
	for _, l := range rep.Latencies {
		if l.Tool == "podtail" {
			lines = append(lines, fmt.Sprintf("discovery: p99 %s over %d starts (< 1 s): %s", l.P99.Round(time.Millisecond), l.Starts, verdict(l.P99 < time.Second && l.Seen == l.Starts)))
		}
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("\n## issue 8's targets\n\n")
	for _, l := range lines {
		fmt.Fprintf(b, "- %s\n", l)
	}
}

// result is tool's result in the scenario, nil when it did not run or
// failed.
func (sc *Scenario) result(tool string) *Result {
	for i := range sc.Results {
		if sc.Results[i].Tool == tool && sc.Results[i].Failed == "" {
			return &sc.Results[i]
		}
	}
	return nil
}

// summary gives, per scenario, podtail's lines per CPU-second and peak RSS
// beside each peer's, and podtail's ratio to each.
func (rep *Report) summary(b *strings.Builder) {
	peers := rep.peers()
	if len(peers) == 0 {
		return
	}
	var out strings.Builder
	for _, sc := range rep.Scenarios {
		pt := sc.result("podtail")
		if pt == nil {
			continue
		}
		measures := []struct {
			name string
			f    func(r *Result) float64
			fmt  func(float64) string
		}{
			{"lines per CPU-s", func(r *Result) float64 { return r.LinesPerCPU() }, num},
			{"peak RSS MiB", func(r *Result) float64 { return float64(r.PeakRSS) / (1 << 20) }, func(f float64) string { return fmt.Sprintf("%.1f", f) }},
		}
		for _, m := range measures {
			fmt.Fprintf(&out, "| %s | %s | %s |", sc.Name, m.name, m.fmt(m.f(pt)))
			for _, peer := range peers {
				if pr := sc.result(peer); pr != nil {
					fmt.Fprintf(&out, " %s | %s |", m.fmt(m.f(pr)), ratio(m.f(pt), m.f(pr)))
				} else if slices.ContainsFunc(sc.Results, func(r Result) bool { return r.Tool == peer }) {
					out.WriteString(" failed | — |")
				} else {
					out.WriteString(" — | — |")
				}
			}
			out.WriteString("\n")
		}
	}
	if out.Len() == 0 {
		return
	}
	b.WriteString("\n## podtail against its peers\n\n")
	b.WriteString("podtail ÷ peer above 1× is better for lines per CPU-s, below 1× for peak RSS; in the container scenarios the CPU includes the Podman service's.\n\n")
	b.WriteString("| scenario | measure | podtail |")
	sep := "|---|---|--:|"
	for _, peer := range peers {
		fmt.Fprintf(b, " %[1]s | podtail ÷ %[1]s |", peerNames[peer])
		sep += "--:|--:|"
	}
	b.WriteString("\n" + sep + "\n")
	b.WriteString(out.String())
}

// targets21 compares the run with issue 21's targets that this bench
// measures (the soak's are elsewhere).
func (rep *Report) targets21(b *strings.Builder) {
	find := func(scenario string) *Scenario {
		for _, sc := range rep.Scenarios {
			if sc.Name == scenario {
				return sc
			}
		}
		return nil
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	mib := func(r *Result) float64 { return float64(r.PeakRSS) / (1 << 20) }
	var lines []string
	if sc := find("throughput"); sc != nil && sc.result("podtail") != nil {
		pt := sc.result("podtail")
		if sc.Bound != nil {
			f := pt.LinesPerCPU() / sc.Bound.LinesPerCPU()
			lines = append(lines, fmt.Sprintf("%s: %.0f %% of the necessary-work bound (≥ 70 %%): %s", sc.Name, 100*f, verdict(f >= 0.7)))
		}
		for _, peer := range []string{"promtail", "alloy"} {
			if pr := sc.result(peer); pr != nil {
				x := pt.LinesPerCPU() / pr.LinesPerCPU()
				lines = append(lines, fmt.Sprintf("%s: %.1f× %s's lines per CPU-second (≥ 20×): %s", sc.Name, x, peerNames[peer], verdict(x >= 20)))
			}
		}
	}
	for _, c := range []struct {
		scenario string
		limit    float64
	}{{"manyfiles", 32}, {"containers", 40}} {
		sc := find(c.scenario)
		if sc == nil || sc.result("podtail") == nil {
			continue
		}
		pt := sc.result("podtail")
		l := fmt.Sprintf("%s (%s): peak RSS %.1f MiB (≤ %.0f MiB", sc.Name, firstField(sc.Title), mib(pt), c.limit)
		ok := mib(pt) <= c.limit
		if al := sc.result("alloy"); al != nil {
			f := mib(pt) / mib(al)
			l += fmt.Sprintf(" and ≤ ¼ of Alloy's): %.2f× Alloy's", f)
			ok = ok && f <= 0.25
		} else {
			l += "; Alloy's not measured)"
		}
		lines = append(lines, l+": "+verdict(ok))
	}
	for _, l := range rep.Latencies {
		if l.Tool == "podtail" {
			lines = append(lines, fmt.Sprintf("discovery: p99 %s over %d starts (≤ 500 ms): %s", l.P99.Round(time.Millisecond), l.Starts, verdict(l.P99 <= 500*time.Millisecond && l.Seen == l.Starts)))
		}
	}
	if rep.Idle != nil {
		lines = append(lines, rep.Idle.targets(verdict)...)
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("\n## issue 21's targets (those this bench measures; the sizes are this run's)\n\n")
	for _, l := range lines {
		fmt.Fprintf(b, "- %s\n", l)
	}
}

// firstField is a scenario title's size, up to its first colon or comma.
func firstField(title string) string {
	if i := strings.IndexAny(title, ":,"); i >= 0 {
		return title[:i]
	}
	return title
}

// rss is the peak RSS column: MiB, with the binary's pages in brackets
// when known (the bound runs inside the bench and has none of its own).
func (r Result) rss() string {
	if r.FileRSS <= 0 || r.Tool == "bound" {
		return fmt.Sprintf("%.1f", float64(r.PeakRSS)/(1<<20))
	}
	return fmt.Sprintf("%.1f (%.1f)", float64(r.PeakRSS)/(1<<20), float64(r.FileRSS)/(1<<20))
}
