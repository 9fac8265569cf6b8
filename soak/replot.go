package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// replot draws <out>.png again from <out>-samples.csv and <out>-events.csv
// (go run ./soak -replot -out bin/soak-<profile> -duration 5m), for a plot
// changed after the run.
func replot(out string, d time.Duration, title string) error {
	rows, err := readCSV(out + "-samples.csv")
	if err != nil {
		return err
	}
	var samples []Sample
	for _, r := range rows {
		if len(r) < 10 {
			return fmt.Errorf("%s-samples.csv: %d columns, want 10", out, len(r))
		}
		v := make([]float64, len(r))
		for i, f := range r {
			if v[i], err = strconv.ParseFloat(f, 64); err != nil {
				v[i] = math.NaN()
			}
		}
		samples = append(samples, Sample{At: time.Duration(v[0] * float64(time.Second)), PID: int(v[1]), RSS: v[2], Goroutines: v[3],
			FDs: v[4], Deleted: v[5], Positions: v[6], Watches: v[7], Lag: v[8], Running: v[9]})
	}
	rows, err = readCSV(out + "-events.csv")
	if err != nil {
		return err
	}
	var events []event
	for _, r := range rows {
		at, _ := strconv.ParseFloat(r[0], 64)
		events = append(events, event{At: time.Duration(at * float64(time.Second)), What: r[1]})
	}
	return plotSamples(out+".png", samples, events, d, title)
}

// readCSV reads a CSV of the soak's (no quoting) without its header.
func readCSV(path string) ([][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]string
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if i > 0 && l != "" {
			out = append(out, strings.Split(l, ","))
		}
	}
	return out, nil
}
