package main

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The plot draws every measure, with gaps where a sample could not be read,
// into a PNG that decodes.
func TestPlotSamples(t *testing.T) {
	var ss []Sample
	for i := range 40 {
		s := Sample{At: time.Duration(i) * 10 * time.Second, RSS: 30 + float64(i%5), Goroutines: 40, FDs: 60, Positions: 12,
			Watches: 35, Lag: 0.8, Running: 30}
		if i == 12 {
			s.RSS, s.Goroutines, s.FDs, s.Watches = math.NaN(), math.NaN(), math.NaN(), math.NaN()
		}
		ss = append(ss, s)
	}
	path := filepath.Join(t.TempDir(), "soak.png")
	events := []event{{At: 2 * time.Minute, What: "podtail SIGKILLed"}, {At: 3 * time.Minute, What: "Loki restarted"}}
	if err := plotSamples(path, ss, events, 6*time.Minute, "test"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 1000 {
		t.Fatalf("image %v", b)
	}
	if os.Getenv("SOAK_PLOT_KEEP") != "" {
		data, _ := os.ReadFile(path)
		_ = os.WriteFile(os.Getenv("SOAK_PLOT_KEEP"), data, 0o644)
	}
}
