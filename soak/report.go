package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// report is everything the soak found, written as <out>.md and
// <out>-samples.csv.
type report struct {
	o                                        options
	profile, run, podmanVersion              string
	podtailVersion                           string
	churnEnd, wall                           time.Duration
	started, removed, failed, nonZero        int
	leftover, podtailStarts                  int
	events                                   []event
	totals                                   map[string]float64
	faultErr, stopErr                        error
	samples                                  []Sample
	res                                      Result
	journal                                  *journalCheck
	caughtUp                                 time.Duration
	caught                                   bool
	fetched                                  int
	counted, want                            map[string]int
	kills, lokis                             []time.Duration
	failures                                 []string // filled by verdict
	rssRef, rssEnd, rssRatio, lagP50, lagP99 float64
	lagMax, podtailMissing, journaldMissing  float64
	rssWindow                                time.Duration
	refFrom, refTo, endFrom, endTo           time.Duration
	verdictOK                                bool
	foreign                                  int
	diag                                     diagnosis
}

// measure is one sampled quantity, as the report and the plot show it.
type measure struct {
	name, unit string
	of         func(Sample) float64
}

var measures = []measure{
	{"RSS", "MiB", func(s Sample) float64 { return s.RSS }},
	{"goroutines", "", func(s Sample) float64 { return s.Goroutines }},
	{"open files", "", func(s Sample) float64 { return s.FDs }},
	{"open deleted files", "", func(s Sample) float64 { return s.Deleted }},
	{"positions file", "KiB", func(s Sample) float64 { return s.Positions }},
	{"inotify watches", "", func(s Sample) float64 { return s.Watches }},
	{"freshness lag", "s", func(s Sample) float64 { return s.Lag }},
	{"churn containers running", "", func(s Sample) float64 { return s.Running }},
}

// verdict decides the exit code: 1 on a lost or duplicated line, a line
// nobody wrote, podtail ending by itself or not stopping cleanly, and (in
// runs that check it) RSS drifting more than 10 %.
func (r *report) verdict() int {
	d := r.o.duration
	// RSS after the first sixth against RSS at the end, each the median of
	// the samples in the window before it (a minute, or d/12 in a short run).
	r.rssWindow = min(time.Minute, d/12)
	r.refFrom, r.refTo = d/6-r.rssWindow, d/6
	r.endFrom, r.endTo = d-r.rssWindow, d
	rss := func(s Sample) float64 { return s.RSS }
	r.rssRef = window(r.samples, r.refFrom, r.refTo, rss)
	r.rssEnd = window(r.samples, r.endFrom, r.endTo, rss)
	r.rssRatio = ratio(r.rssEnd, r.rssRef)
	var lags []float64
	for _, s := range r.samples {
		if s.At <= r.churnEnd && !math.IsNaN(s.Lag) {
			lags = append(lags, s.Lag)
		}
	}
	sort.Float64s(lags)
	r.lagP50, r.lagP99, r.lagMax = quantile(lags, 0.5), quantile(lags, 0.99), quantile(lags, 1)

	a := r.res.All
	r.podtailMissing = float64(a.Missing)
	if r.journal != nil && r.journal.Err == nil {
		r.journaldMissing = float64(r.journal.NotJournal)
		r.podtailMissing -= r.journaldMissing
	}
	for _, n := range r.res.Foreign {
		r.foreign += n
	}
	if r.podtailMissing > 0 {
		r.failures = append(r.failures, fmt.Sprintf("%.0f lines missing from Loki", r.podtailMissing))
	}
	if a.Dup > 0 {
		r.failures = append(r.failures, fmt.Sprintf("%d lines duplicated in Loki", a.Dup))
	}
	if a.Beyond > 0 || r.foreign > 0 {
		r.failures = append(r.failures, fmt.Sprintf("%d lines in Loki no writer wrote (%d numbered beyond their writer's count, %d foreign)", a.Beyond+r.foreign, a.Beyond, r.foreign))
	}
	if r.faultErr != nil {
		r.failures = append(r.failures, r.faultErr.Error())
	}
	if r.stopErr != nil {
		r.failures = append(r.failures, r.stopErr.Error())
	}
	if r.o.rssCheck && !(math.Abs(r.rssRatio-1) <= 0.10) {
		r.failures = append(r.failures, fmt.Sprintf("RSS at the end %.1f MiB is %.2f× RSS after the first sixth (%.1f MiB): not within 10 %%", r.rssEnd, r.rssRatio, r.rssRef))
	}
	r.verdictOK = len(r.failures) == 0
	if r.verdictOK {
		return 0
	}
	return 1
}

// quantile is the nearest-rank quantile of sorted v.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

func (r *report) summary() string {
	a := r.res.All
	var b strings.Builder
	fmt.Fprintf(&b, "soak %s, %s: %d lines written by %d writers, %d read back from Loki; missing %d, duplicated %d, beyond %d, foreign %d\n",
		r.profile, r.o.duration, a.Written, a.Sources, r.fetched, a.Missing, a.Dup, a.Beyond, r.foreign)
	fmt.Fprintf(&b, "soak: RSS %.1f MiB after the first sixth, %.1f at the end (%.2f×); freshness lag p50 %.1f s, p99 %.1f s; wall %s\n",
		r.rssRef, r.rssEnd, r.rssRatio, r.lagP50, r.lagP99, r.wall.Round(time.Second))
	if r.verdictOK {
		fmt.Fprintf(&b, "soak: PASS (report %s.md)\n", r.o.out)
	} else {
		fmt.Fprintf(&b, "soak: FAIL: %s (report %s.md)\n", strings.Join(r.failures, "; "), r.o.out)
	}
	return b.String()
}

func f1(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e9 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// write writes the markdown report and the samples' CSV.
func (r *report) write() error {
	var b strings.Builder
	a := r.res.All
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	verdict := "**PASS**: every line in Loki exactly once"
	if !r.verdictOK {
		verdict = "**FAIL**: " + strings.Join(r.failures, "; ")
	}
	w("# podtail soak: %s, %s\n\n%s.\n\n", r.profile, r.o.duration, verdict)
	w("%s; %s; Podman %s; run %s; wall time %s (churn %s, then catch-up %s%s, verification, report).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), r.podtailVersion, r.podmanVersion, r.run, r.wall.Round(time.Second),
		r.churnEnd.Round(time.Second), r.caughtUp.Round(time.Second), map[bool]string{true: "", false: " (timed out)"}[r.caught])

	w("## Workload\n\n")
	w("- Churn: %d containers kept running, each printing %d lines/s (one in three also on stderr) for 20–40 s and exiting; "+
		"exited ones removed every second and replaced (at most two started a second). %d started, %d removed after exiting, "+
		"%d `podman run` failures, %d exited other than 0, %d removed unfinished at the end.\n",
		r.o.running, r.o.rate, r.started, r.removed, r.failed, r.nonZero, r.leftover)
	w("- zap apps (e2e/apps/zaplog, lumberjack, 1 MB files, 3 gzipped backups): %d in containers with their logs directory mounted "+
		"from the host (also echoing each line's number on stdout), %d on the host under a `files.static` glob; %d lines/s each "+
		"(a rotation every ~%.0f s).\n", r.o.zapConts, r.o.zapHosts, r.o.zapRate, 1e6/230/float64(max(r.o.zapRate, 1)))
	w("- Three tenants; podtail with its defaults but for paths (config in the temporary directory), `log.level: %s`; started %d times.\n\n",
		r.o.logLevel, r.podtailStarts)

	w("## Faults\n\n| at | what | ready again after |\n| --- | --- | --- |\n")
	for _, e := range r.events {
		w("| %s | %s | %s |\n", e.At.Round(time.Second), e.What, e.Took.Round(100*time.Millisecond))
	}
	w("\nScheduled: podtail SIGKILLed at %s; Loki restarted at %s.\n\n", durations(r.kills), durations(r.lokis))

	w("## Every line once\n\n| writers | sources | lines written | returned by Loki | missing | duplicates | numbered beyond | count unknown |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var classes []string
	for c := range r.res.ByClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	for _, c := range classes {
		t := r.res.ByClass[c]
		w("| %s | %d | %d | %d | %d | %d | %d | %d |\n", c, t.Sources, t.Written, t.Found, t.Missing, t.Dup, t.Beyond, t.Unknown)
	}
	w("| **all** | %d | %d | %d | %d | %d | %d | %d |\n\n", a.Sources, a.Written, a.Found, a.Missing, a.Dup, a.Beyond, a.Unknown)
	w("Every entry of each tenant read back by time-paged `query_range` (%d entries; a line Loki holds twice at one time counts twice); "+
		"foreign lines (none of the soak's): %d. Loki's own counts (`count_over_time`) against what was written, per tenant:", r.fetched, r.foreign)
	var ts []string
	for t := range r.want {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	for _, t := range ts {
		w(" %s %d/%d;", t, r.counted[t], r.want[t])
	}
	w(" (writers whose count is unknown add to Loki's.)\n\n")
	if r.journal != nil {
		w("journald profile: of the missing lines, %d are in the journal (lost by podtail), %d are not though the journal holds other lines of "+
			"their writer (journald never stored them: its rate limit), and %d are of writers the journal holds nothing of any more "+
			"(rotated and vacuumed since; counted as podtail's). ", r.journal.InJournal, r.journal.NotJournal, r.journal.Gone)
		if r.journal.Err != nil {
			w("journalctl: %v. ", r.journal.Err)
		}
		w("journald said: `%s`\n\n", lastLines(r.journal.Suppressed, 3))
	}
	if failed := r.res.Failed(); len(failed) > 0 {
		w("Sources not exactly once (%d):\n\n| source | class | written | missing (ranges) | duplicated (seq) | beyond |\n| --- | --- | ---: | --- | --- | ---: |\n", len(failed))
		for i, s := range failed {
			if i == 40 {
				w("| … %d more | | | | | |\n", len(failed)-40)
				break
			}
			mark := ""
			if s.Key.Stream != "file" && r.diag.Gone[s.Key.Name] {
				mark = " †"
			}
			w("| %s%s | %s | %d | %d: %s | %d: %s | %d |\n", s.Key, mark, s.Class, s.Want, s.Missing, firstRanges(s.Gaps, 8), s.Dup, firstInts(s.Dups, 8), s.Beyond)
		}
		if len(r.diag.Gone) > 0 {
			w("\n† podtail logged %q for this container: it came to (re)open the container's log after the container was "+
				"removed (a restarted podtail that learned of it late, or an event later than the catcher holds a new log), "+
				"and read nothing more of it.\n", goneMsg)
		}
		w("\n")
	}
	ages := r.diag.EventAges
	gl, gw := r.diag.goneLines(r.res)
	w("podtail's log: Podman's events for this run's containers reached it %d times, %.1f s late at the median, %.1f s at p99, %.1f s at most; "+
		"it learned of %d containers only after their log was gone (%d of them missing %d lines). Warnings and errors: %s.\n\n",
		len(ages), quantile(ages, 0.5), quantile(ages, 0.99), quantile(ages, 1), len(r.diag.Gone), gw, gl, orNone(strings.Join(r.diag.topMessages(8), "; ")))
	w("podtail's counters over its %d processes: ", r.podtailStarts)
	var ks []string
	for k := range r.totals {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		w("`%s` %.0f; ", k, r.totals[k])
	}
	w("\n\n## Resources\n\nSampled every %s from /proc and /metrics (the PNG: %s).\n\n", sampleEvery, filepath.Base(r.o.out)+".png")
	w("| measure | first sample | after the first sixth (median %s–%s) | at the end (median %s–%s) | max |\n| --- | ---: | ---: | ---: | ---: |\n",
		r.refFrom.Round(time.Second), r.refTo.Round(time.Second), r.endFrom.Round(time.Second), r.endTo.Round(time.Second))
	for _, m := range measures {
		first, mx := math.NaN(), math.NaN()
		for _, s := range r.samples {
			v := m.of(s)
			if math.IsNaN(v) {
				continue
			}
			if math.IsNaN(first) {
				first = v
			}
			if math.IsNaN(mx) || v > mx {
				mx = v
			}
		}
		name := m.name
		if m.unit != "" {
			name += " (" + m.unit + ")"
		}
		w("| %s | %s | %s | %s | %s |\n", name, f1(first), f1(window(r.samples, r.refFrom, r.refTo, m.of)), f1(window(r.samples, r.endFrom, r.endTo, m.of)), f1(mx))
	}
	check := "checked: the target is within 10 %"
	if !r.o.rssCheck {
		check = "reported, not checked: a run this short ends before RSS settles"
	}
	w("\nRSS at the end / after the first sixth: **%.2f×** (%s). Freshness lag (now minus the newest container line in Loki, worst tenant) during the churn: p50 %.1f s, p99 %.1f s, max %.1f s.\n\n",
		r.rssRatio, check, r.lagP50, r.lagP99, r.lagMax)
	w("![podtail over the soak](%s)\n\npodtail's log: `%s`; samples: `%s`.\n", filepath.Base(r.o.out)+".png", r.o.out+"-podtail.log", r.o.out+"-samples.csv")
	if err := os.WriteFile(r.o.out+".md", []byte(b.String()), 0o644); err != nil {
		return err
	}
	return r.writeCSV()
}

func (r *report) writeCSV() error {
	var b strings.Builder
	b.WriteString("seconds,pid,rss_mib,goroutines,fds,deleted_fds,positions_kib,inotify_watches,lag_s,running\n")
	for _, s := range r.samples {
		fmt.Fprintf(&b, "%.0f,%d,%s,%s,%s,%s,%s,%s,%s,%s\n", s.At.Seconds(), s.PID, csv(s.RSS), csv(s.Goroutines), csv(s.FDs), csv(s.Deleted), csv(s.Positions), csv(s.Watches), csv(s.Lag), csv(s.Running))
	}
	if err := os.WriteFile(r.o.out+"-samples.csv", []byte(b.String()), 0o644); err != nil {
		return err
	}
	b.Reset()
	b.WriteString("seconds,what,took_s\n")
	for _, e := range r.events {
		fmt.Fprintf(&b, "%.0f,%s,%.1f\n", e.At.Seconds(), strings.ReplaceAll(e.What, ",", ";"), e.Took.Seconds())
	}
	return os.WriteFile(r.o.out+"-events.csv", []byte(b.String()), 0o644)
}

func csv(v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	return fmt.Sprintf("%.2f", v)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func durations(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.Round(time.Second).String())
	}
	return strings.Join(s, ", ")
}

func firstRanges(rs []Range, n int) string {
	var s []string
	for i, r := range rs {
		if i == n {
			s = append(s, "…")
			break
		}
		s = append(s, r.String())
	}
	return strings.Join(s, " ")
}

func firstInts(v []int, n int) string {
	var s []string
	for i, x := range v {
		if i == n {
			s = append(s, "…")
			break
		}
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, " ")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " / ")
}
