package pipeline

import (
	"strings"
	"testing"
	"time"
)

// feed adds lines one second apart (in both line time and read time),
// with positions 1, 2, ..., and returns what came out, then what a forced
// flush adds.
func feed(m *Multiline, lines []string) (out, rest []Joined) {
	for i, l := range lines {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		out = append(out, m.Add(l, at, int64(i+1), at)...)
	}
	return out, m.Flush(t0, true)
}

func mustMultiline(t testing.TB, cfg MultilineConfig) *Multiline {
	t.Helper()
	m, err := NewMultiline(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMultilineGoPanic pins that a Go panic written after a zap JSON line
// becomes part of that entry, with the first line's time and the last
// line's position.
func TestMultilineGoPanic(t *testing.T) {
	panicLines := []string{
		`{"level":"info","ts":1732492800.1,"msg":"before"}`,
		`{"level":"error","ts":1732492800.2,"msg":"about to panic"}`,
		"panic: runtime error: invalid memory address or nil pointer dereference",
		"[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a2f3c]",
		"",
		"goroutine 1 [running]:",
		"main.handler(0x0)",
		"\t/app/main.go:42 +0x1c",
		"main.main()",
		"\t/app/main.go:17 +0x25",
		"exit status 2",
		`{"level":"info","ts":1732492801,"msg":"restarted"}`,
	}
	m := mustMultiline(t, MultilineConfig{FirstLine: `^\{`})
	out, rest := feed(m, panicLines)
	all := append(out, rest...)
	if len(all) != 3 {
		t.Fatalf("%d entries: %+v", len(all), all)
	}
	if want := strings.Join(panicLines[1:11], "\n"); all[1].Line != want {
		t.Errorf("panic entry:\n%s\nwant\n%s", all[1].Line, want)
	}
	if !all[1].Time.Equal(t0.Add(time.Millisecond)) || all[1].Pos != 11 {
		t.Errorf("panic entry time %v pos %d, want the first line's time and the last line's position 11", all[1].Time, all[1].Pos)
	}
	if all[2].Line != panicLines[11] || all[2].Pos != 12 {
		t.Errorf("last entry %+v", all[2])
	}
	// A panic at the very start (nothing pending) starts an entry of its own.
	m = mustMultiline(t, MultilineConfig{FirstLine: `^\{`})
	out, rest = feed(m, panicLines[2:])
	if all := append(out, rest...); len(all) != 2 || all[0].Line != strings.Join(panicLines[2:11], "\n") {
		t.Errorf("leading panic: %+v", all)
	}
}

// TestMultilineZapStacktrace pins zap's console encoder, which prints the
// stacktrace on the lines after the entry, with first_line a timestamp.
func TestMultilineZapStacktrace(t *testing.T) {
	lines := []string{
		"2024-11-25T00:00:00.000Z\tERROR\tsvc/h.go:42\tquery failed\t{\"err\": \"timeout\"}",
		"main.(*server).handle",
		"\t/app/svc/h.go:42",
		"net/http.HandlerFunc.ServeHTTP",
		"\t/usr/local/go/src/net/http/server.go:2220",
		"2024-11-25T00:00:01.000Z\tINFO\tsvc/h.go:50\tok",
	}
	m := mustMultiline(t, MultilineConfig{FirstLine: `^\d{4}-\d{2}-\d{2}T`, MaxWait: time.Second})
	out, rest := feed(m, lines)
	if len(out) != 1 || out[0].Line != strings.Join(lines[:5], "\n") || out[0].Pos != 5 {
		t.Errorf("stacktrace entry: %+v", out)
	}
	if len(rest) != 1 || rest[0].Line != lines[5] {
		t.Errorf("rest: %+v", rest)
	}
}

// TestMultilineMaxLines pins the cut at max_lines: the entry is emitted
// when full, and the next line starts a new one.
func TestMultilineMaxLines(t *testing.T) {
	m := mustMultiline(t, MultilineConfig{FirstLine: `^START`, MaxLines: 3})
	out, rest := feed(m, []string{"START", "a", "b", "c", "d", "START", "e"})
	all := append(out, rest...)
	want := []string{"START\na\nb", "c\nd", "START\ne"}
	if len(all) != len(want) {
		t.Fatalf("entries %+v", all)
	}
	for i, w := range want {
		if all[i].Line != w {
			t.Errorf("entry %d = %q, want %q", i, all[i].Line, w)
		}
	}
	if all[0].Pos != 3 || all[1].Pos != 5 {
		t.Errorf("positions %d %d", all[0].Pos, all[1].Pos)
	}
}

// TestMultilineMaxWait pins the time rule: Flush emits the pending entry
// once max_wait has passed since its last line, not before; Add does the
// same before taking a line; Deadline tells when.
func TestMultilineMaxWait(t *testing.T) {
	m := mustMultiline(t, MultilineConfig{FirstLine: `^\{`, MaxWait: 500 * time.Millisecond})
	if _, ok := m.Deadline(); ok {
		t.Error("deadline with nothing pending")
	}
	m.Add("{a", t0, 1, t0)
	m.Add("  more", t0, 2, t0.Add(400*time.Millisecond))
	if d, ok := m.Deadline(); !ok || !d.Equal(t0.Add(900*time.Millisecond)) {
		t.Errorf("deadline %v %v", d, ok)
	}
	if got := m.Flush(t0.Add(899*time.Millisecond), false); got != nil {
		t.Errorf("flushed early: %+v", got)
	}
	got := m.Flush(t0.Add(900*time.Millisecond), false)
	if len(got) != 1 || got[0].Line != "{a\n  more" || got[0].Pos != 2 || m.Pending() != 0 {
		t.Errorf("flush: %+v", got)
	}
	if m.Flush(t0.Add(time.Hour), true) != nil {
		t.Error("flush with nothing pending")
	}
	// A continuation after max_wait does not join the stale entry.
	m.Add("{b", t0, 3, t0)
	out := m.Add("late", t0, 4, t0.Add(time.Second))
	if len(out) != 1 || out[0].Line != "{b" || m.Pending() != 1 {
		t.Errorf("late line: %+v, pending %d", out, m.Pending())
	}
}

// FuzzMultiline: never panics, and the joined entries, joined again with
// "\n", are exactly the input lines joined with "\n": nothing lost,
// nothing duplicated, order kept; positions only grow.
func FuzzMultiline(f *testing.F) {
	f.Add("{a}\npanic: x\n\tframe\n{b}", 3, uint8(1))
	f.Add("\n\n\n", 1, uint8(0))
	f.Add("x", 128, uint8(255))
	f.Fuzz(func(t *testing.T, text string, maxLines int, waitEvery uint8) {
		if maxLines < 1 || maxLines > 1000 {
			maxLines = 1 + (maxLines%8+8)%8
		}
		m, err := NewMultiline(MultilineConfig{FirstLine: `^\{`, MaxLines: maxLines, MaxWait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(text, "\n")
		var got []Joined
		now := t0
		for i, l := range lines {
			if waitEvery != 0 && i%int(waitEvery) == 0 {
				now = now.Add(2 * time.Second) // past max_wait
				got = append(got, m.Flush(now, false)...)
			}
			got = append(got, m.Add(l, now, int64(i+1), now)...)
		}
		got = append(got, m.Flush(now, true)...)
		parts := make([]string, len(got))
		var last int64
		for i, j := range got {
			parts[i] = j.Line
			if j.Pos <= last {
				t.Fatalf("positions not growing: %d after %d", j.Pos, last)
			}
			last = j.Pos
			if n := strings.Count(j.Line, "\n") + 1; n > maxLines {
				t.Fatalf("entry of %d lines, max %d", n, maxLines)
			}
		}
		if strings.Join(parts, "\n") != text {
			t.Fatalf("joined %q, want %q", strings.Join(parts, "\n"), text)
		}
		if last != int64(len(lines)) {
			t.Fatalf("last position %d, want %d", last, len(lines))
		}
	})
}
