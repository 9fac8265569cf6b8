package main

import (
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/podtail/podtail/pkg/pipeline/stage"
)

// The human form of podtail pipeline test's reports: one block per entry,
//
//	line 1: {"level":"info",...}
//	  [1] zap: parsed (JSON object); labels log_level=info; time ... (ts); metadata caller=...; fields ...
//	  [2] drop: kept (matched; sample 0.953 >= drop_ratio 0.9: kept)
//	  => {application="test777", ...} 2024-11-25T00:00:00.123456Z (from [1] zap: ts) caller=...
//	     {"level":"info",...}

// writeHuman writes r's block.
func (r *testReport) writeHuman(w io.Writer) {
	var b strings.Builder
	if r.Lines[0] == r.Lines[1] {
		b.WriteString("line " + strconv.Itoa(r.Lines[0]) + ":")
	} else {
		b.WriteString("lines " + strconv.Itoa(r.Lines[0]) + "-" + strconv.Itoa(r.Lines[1]) + " (joined):")
	}
	if in := display(r.Input, "  "); strings.HasPrefix(in, "\n") {
		b.WriteString(in)
	} else {
		b.WriteString(" " + in)
	}
	b.WriteByte('\n')
	for _, g := range r.Guards {
		b.WriteString("  limits: " + g + "\n")
	}
	for i, s := range r.Steps {
		b.WriteString("  " + r.index[i] + " " + s.Type + ": " + s.human() + "\n")
	}
	switch {
	case r.Entry != nil:
		e := r.Entry
		b.WriteString("  => " + e.Labels + "\n     time " + e.Time + " (" + e.TimeFrom + ")")
		if len(e.Metadata) > 0 {
			b.WriteString("; metadata")
			for _, m := range e.Metadata {
				b.WriteString(" " + pair(m.Name, m.Value))
			}
		}
		if e.Line == r.Input {
			b.WriteString("; line as read\n")
		} else {
			b.WriteString("; line " + display(e.Line, "     ") + "\n")
		}
	default:
		by := r.DropBy
		for i, s := range r.Steps {
			if s.Stage == r.DropBy {
				by = r.index[i] + " " + s.Type
			}
		}
		b.WriteString("  => DROPPED " + r.Dropped + " by " + by + "\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// human is one step on one line: what the stage made of the line, then
// what it set, the fields last (they are many).
func (s *testStep) human() string {
	var parts []string
	note := func(head string) string {
		if s.Note == "" {
			return head
		}
		return head + " (" + s.Note + ")"
	}
	switch stage.Parse(s.Parse) {
	case stage.ParseOK:
		parts = append(parts, note("parsed"))
	case stage.ParseFailed:
		parts = append(parts, note("PARSE FAILED"))
	case stage.ParseSkipped:
		parts = append(parts, note("skipped"))
	default:
		switch {
		case !s.Kept:
			parts = append(parts, note("DROPPED "+s.DropReason))
		case s.Note != "" && s.Type == "drop":
			parts = append(parts, note("kept"))
		case s.Note != "":
			parts = append(parts, s.Note)
		}
	}
	if s.Parse != "" && !s.Kept {
		parts = append(parts, "DROPPED "+s.DropReason)
	}
	if len(s.Labels) > 0 {
		parts = append(parts, "labels "+pairs(s.Labels))
	}
	switch {
	case s.Time != "":
		parts = append(parts, "time "+s.Time+" ("+s.TimeFrom+")")
	case s.TimeFrom != "":
		parts = append(parts, "time unchanged ("+s.TimeFrom+")")
	}
	if len(s.Metadata) > 0 {
		md := make([]string, len(s.Metadata))
		for i, m := range s.Metadata {
			md[i] = pair(m.Name, m.Value)
		}
		parts = append(parts, "metadata "+strings.Join(md, " "))
	}
	if s.LineChanged {
		parts = append(parts, "line "+display(s.Line, "    "))
	}
	if len(s.Fields) > 0 {
		parts = append(parts, "fields "+pairs(s.Fields))
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

// pairs writes m as name=value pairs in name order.
func pairs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = pair(k, m[k])
	}
	return strings.Join(out, " ")
}

// pair is name=value, the value quoted when it would not read back as one
// word.
func pair(k, v string) string {
	if v == "" || strings.ContainsAny(v, " \"=;") || hasControl(v) {
		return k + "=" + strconv.Quote(v)
	}
	return k + "=" + v
}

// display is a line as it reads: a joined entry's lines each on a row of
// its own after indent and "| "; quoted (Go syntax) when it holds control
// characters other than newlines and tabs.
func display(s, indent string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r != '\n' && r != '\t' && unicode.IsControl(r) }) >= 0 {
		return strconv.Quote(s)
	}
	if !strings.Contains(s, "\n") {
		return s
	}
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		b.WriteString("\n" + indent + "|")
		if l != "" {
			b.WriteString(" " + l)
		}
	}
	return b.String()
}

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// fmtTime writes a time in UTC, to the nanosecond.
func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// mergedLabels are the source's labels with the pairs it passes per line.
func mergedLabels(base map[string]string, send []string) map[string]string {
	out := make(map[string]string, len(base)+len(send)/2)
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(send); i += 2 {
		out[send[i]] = send[i+1]
	}
	return out
}

// dropCounts are the drops a stream counted, by reason.
func dropCounts(v *prometheus.CounterVec) map[string]float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { v.Collect(ch); close(ch) }()
	out := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "reason" {
				out[l.GetValue()] += d.GetCounter().GetValue()
			}
		}
	}
	return out
}

// droppedFor is the reason counted between before and after.
func droppedFor(before, after map[string]float64) string {
	for reason, n := range after {
		if n > before[reason] {
			return reason
		}
	}
	return "unknown"
}
