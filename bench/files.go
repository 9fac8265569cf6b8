package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// files runs a file scenario: generate, each tool, the bound, the profile.
func (b *bench) files(ctx context.Context, name string, shape [2]int, profile bool) error {
	s := shapeFor(shape[0], shape[1])
	root := filepath.Join(b.dir, name+"-logs")
	logf("%s: generating %s", name, s)
	genStart := time.Now()
	w, err := Generate(root, s, time.Now().Add(-10*time.Minute))
	if err != nil {
		return err
	}
	logf("%s: %d lines, %.1f MB in %s", name, w.Lines, float64(w.Bytes)/1e6, time.Since(genStart).Round(time.Millisecond))
	sc := &Scenario{Name: name, Title: fmt.Sprintf("%s: %d lines, %.1f MB, lines of %d–%d bytes", s, w.Lines, float64(w.Bytes)/1e6, w.MinLine, w.MaxLine)}
	b.rep.Scenarios = append(b.rep.Scenarios, sc)
	glob := filepath.Join(root, "namespace", "*", "*", "workplace", "logs")
	specFor := func(tool string) runSpec {
		spec := runSpec{tool: tool, expect: w.Lines, bytes: w.Bytes, from: w.TimeFrom, to: w.TimeTo, stall: b.o.stall, forward: b.forward}
		if isPodtail(tool) {
			spec.start = b.startPodtail(tool, podtailConfig{StaticGlob: glob})
		} else {
			spec.start, _ = b.peerStart(tool, root, "", "")
		}
		return spec
	}
	one := func(tool string, i, n int) (Result, error) {
		dir, err := b.toolDir(name, tool)
		if err != nil {
			return Result{}, err
		}
		logf("%s: %s (run %d of %d)", name, tool, i+1, n)
		r, err := measure(ctx, dir, specFor(tool))
		if err != nil {
			return r, err
		}
		logf("%s: %s: %s", name, tool, r.brief())
		return r, nil
	}
	// podtail (and podtail-base, with -baseline) and the bound run in turn,
	// runs times each, and the median of each is reported: the ratios
	// between them then compare runs made under the same conditions.
	// The peers run once: they take a minute, and their ratio to podtail is
	// an order of magnitude, far above the noise. A peer that fails (exits,
	// or stalls) gets a row saying how, and the bench goes on.
	var turn []string // podtail and podtail-base, those asked for
	for _, tool := range b.o.tools {
		if isPodtail(tool) {
			turn = append(turn, tool)
		}
	}
	runs := map[string][]Result{}
	var bounds []Result
	for i := 0; i < b.o.runs && len(turn) > 0; i++ {
		for _, tool := range roundOrder(turn, i) {
			r, err := one(tool, i, b.o.runs)
			if err != nil {
				return err
			}
			runs[tool] = append(runs[tool], r)
		}
		logf("%s: the necessary-work bound (run %d of %d)", name, i+1, b.o.runs)
		br, err := measureBound(root, w.Lines)
		if err != nil {
			return err
		}
		logf("%s: bound: %s", name, br.brief())
		bounds = append(bounds, br)
	}
	for _, tool := range turn {
		sc.Results = append(sc.Results, median(runs[tool]))
	}
	for _, tool := range b.o.tools {
		if isPodtail(tool) {
			continue
		}
		r, err := one(tool, 0, 1)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			r = b.peerFailed(name, r, err)
		}
		sc.Results = append(sc.Results, r)
	}
	if len(bounds) == 0 {
		logf("%s: the necessary-work bound", name)
		br, err := measureBound(root, w.Lines)
		if err != nil {
			return err
		}
		logf("%s: bound: %s", name, br.brief())
		bounds = append(bounds, br)
	}
	br := median(bounds)
	sc.Bound = &br

	if profile && contains(b.o.tools, "podtail") {
		if err := b.profilePodtail(ctx, sc, specFor("podtail"), glob); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	if !b.o.keep {
		_ = os.RemoveAll(root)
	}
	return nil
}

// median is the run of median CPU time; with more than one, its note gives
// the range of all of them.
func median(rs []Result) Result {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b Result) int { return cmp.Compare(a.TotalCPU(), b.TotalCPU()) })
	m := sorted[len(sorted)/2]
	m.Runs, m.CPUMin, m.CPUMax = len(sorted), sorted[0].TotalCPU(), sorted[len(sorted)-1].TotalCPU()
	if len(sorted) > 1 {
		note := fmt.Sprintf("median of %d runs by CPU (%.2f–%.2f s)", len(sorted), sorted[0].TotalCPU().Seconds(), sorted[len(sorted)-1].TotalCPU().Seconds())
		if m.Note != "" {
			note = m.Note + "; " + note
		}
		m.Note = note
	}
	return m
}
