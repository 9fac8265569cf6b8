package main

import (
	"image/color"
	"math"
	"os"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	killColour = color.RGBA{R: 200, A: 255}
	lokiColour = color.RGBA{B: 200, A: 255}
	endColour  = color.RGBA{R: 120, G: 120, B: 120, A: 255}
)

// plotSamples draws one panel per measure over the run's minutes, with the
// faults as vertical lines (podtail killed: red, Loki restarted: blue, the
// churn's end: grey), into a PNG at path.
func plotSamples(path string, samples []Sample, events []event, d time.Duration, title string) error {
	// One x range for every panel, so that they line up: a measure that
	// stops early (the freshness lag, at the churn's end) would otherwise
	// end its axis there.
	xmax := d.Minutes()
	for _, s := range samples {
		xmax = math.Max(xmax, s.At.Minutes())
	}
	rows := make([][]*plot.Plot, len(measures))
	for i, m := range measures {
		p := plot.New()
		if i == 0 {
			p.Title.Text = title
		}
		p.Y.Label.Text = m.name
		if m.unit != "" {
			p.Y.Label.Text += " (" + m.unit + ")"
		}
		if i == len(measures)-1 {
			p.X.Label.Text = "minutes since the churn began"
		}
		p.Add(plotter.NewGrid())
		// A gap where the measure could not be read (podtail restarting,
		// Loki down) breaks the line rather than joining across it.
		var seg plotter.XYs
		flush := func() {
			if len(seg) == 0 {
				return
			}
			if l, err := plotter.NewLine(seg); err == nil {
				l.Color = color.Black
				l.Width = vg.Points(1)
				p.Add(l)
			}
			if len(seg) == 1 {
				if s, err := plotter.NewScatter(seg); err == nil {
					s.GlyphStyle.Radius = vg.Points(1.5)
					p.Add(s)
				}
			}
			seg = nil
		}
		ymin, ymax := math.Inf(1), math.Inf(-1)
		for _, s := range samples {
			v := m.of(s)
			if math.IsNaN(v) {
				flush()
				continue
			}
			ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			seg = append(seg, plotter.XY{X: s.At.Minutes(), Y: v})
		}
		flush()
		if math.IsInf(ymin, 0) {
			ymin, ymax = 0, 1
		}
		ymin = math.Min(ymin, 0) // from zero: a drift reads as what it is
		if ymax <= ymin {
			ymax = ymin + 1
		}
		ymax *= 1.08
		if i == 0 {
			ymax *= 1.2 // room for the legend
		}
		p.Y.Min, p.Y.Max = ymin, ymax
		p.X.Min, p.X.Max = 0, xmax
		for _, e := range events {
			c := lokiColour
			if strings.HasPrefix(e.What, "podtail") {
				c = killColour
			}
			vline(p, e.At.Minutes(), ymin, ymax, c)
		}
		vline(p, d.Minutes(), ymin, ymax, endColour)
		if i == 0 {
			legend(p)
		}
		rows[i] = []*plot.Plot{p}
	}
	img := vgimg.New(vg.Points(900), vg.Points(float64(170*len(measures))))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(measures), Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6),
		PadRight: vg.Points(12), PadY: vg.Points(10)}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func vline(p *plot.Plot, x, y0, y1 float64, c color.Color) {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: y0}, {X: x, Y: y1}})
	if err != nil {
		return
	}
	l.Color = c
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l)
}

// legend names the vertical lines' colours.
func legend(p *plot.Plot) {
	for _, e := range []struct {
		name string
		c    color.Color
	}{{"podtail SIGKILLed", killColour}, {"Loki restarted", lokiColour}, {"churn ends", endColour}} {
		// Only its thumbnail is drawn: the line itself is not in the plot.
		l := &plotter.Line{LineStyle: draw.LineStyle{Color: e.c, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(4), vg.Points(3)}}}
		p.Legend.Add(e.name, l)
	}
	p.Legend.Top = true
}
