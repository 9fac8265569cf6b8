package source

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// ParseCRI splits a k8s-file line into time, stream, partial flag and
// content: both streams, both tags, content with spaces kept verbatim, and
// an empty content with or without the space after the tag.
func TestParseCRI(t *testing.T) {
	ts := "2026-11-25T00:06:14.404991023+00:00"
	for _, tc := range []struct {
		name, in string
		time     time.Time
		stream   string
		partial  bool
		content  string
	}{
		{"full stdout", ts + " stdout F hello world", base, Stdout, false, "hello world"},
		{"partial stderr", ts + " stderr P part one", base, Stderr, true, "part one"},
		{"content keeps leading and trailing spaces", ts + " stdout F   x  ", base, Stdout, false, "  x  "},
		{"content keeps tabs and CR", ts + " stdout F a\tb\r", base, Stdout, false, "a\tb\r"},
		{"content that looks like a header", ts + " stdout F " + ts + " stderr P y", base, Stdout, false, ts + " stderr P y"},
		{"empty content", ts + " stdout F", base, Stdout, false, ""},
		{"empty content after a space", ts + " stderr F ", base, Stderr, false, ""},
		{"empty partial", ts + " stdout P", base, Stdout, true, ""},
		{"other zone, same instant", "2026-11-25T01:06:14.404991023+01:00 stdout F z", base, Stdout, false, "z"},
		{"Z zone, fewer digits", "2026-11-25T00:06:14.5Z stdout F z", time.Date(2026, 11, 25, 0, 6, 14, 5e8, time.UTC), Stdout, false, "z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseCRI([]byte(tc.in))
			if err != nil {
				t.Fatalf("ParseCRI(%q): %v", tc.in, err)
			}
			if !l.Time.Equal(tc.time) || l.Stream != tc.stream || l.Partial != tc.partial || string(l.Content) != tc.content {
				t.Errorf("ParseCRI(%q) = {%v %q %v %q}, want {%v %q %v %q}", tc.in,
					l.Time, l.Stream, l.Partial, l.Content, tc.time, tc.stream, tc.partial, tc.content)
			}
		})
	}
}

// Lines not written by conmon are refused with an error wrapping errCRI: no
// space, a bad time, a stream other than stdout/stderr, a tag other than
// P/F, or a tag not followed by a space.
func TestParseCRIRejects(t *testing.T) {
	ts := "2026-11-25T00:06:14.404991023+00:00"
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"no space", ts},
		{"plain text", "hello world"},
		{"bad time", "2026-13-25T00:06:14Z stdout F x"},
		{"time without zone", "2026-11-25T00:06:14.404991023 stdout F x"},
		{"leading space", " " + ts + " stdout F x"},
		{"bad stream", ts + " stdin F x"},
		{"upper-case stream", ts + " STDOUT F x"},
		{"stream without tag", ts + " stdout"},
		{"stream, space, no tag", ts + " stdout "},
		{"bad tag", ts + " stdout X x"},
		{"lower-case tag", ts + " stdout f x"},
		{"tag not followed by a space", ts + " stdout Fx"},
		{"two spaces before the stream", ts + "  stdout F x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseCRI([]byte(tc.in))
			if err == nil {
				t.Fatalf("ParseCRI(%q) = %+v, want an error", tc.in, l)
			}
			if !errors.Is(err, errCRI) {
				t.Errorf("ParseCRI(%q) error %v does not wrap errCRI", tc.in, err)
			}
		})
	}
}

// FuzzParseCRI: ParseCRI never panics; what it accepts has a known stream,
// and rendering the parsed values again as `time stream tag content` parses
// to the same values.
func FuzzParseCRI(f *testing.F) {
	ts := "2026-11-25T00:06:14.404991023+00:00"
	for _, s := range []string{
		ts + " stdout F hello", ts + " stderr P part", ts + " stdout F", ts + " stdout F ",
		ts + " stdout Fx", ts + " stdin F x", "x", "", " ", "2026-11-25T00:06:14Z stderr F  a b ",
		"0000-01-01T00:00:00-23:59 stdout P \x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		l, err := ParseCRI(in)
		if err != nil {
			if !errors.Is(err, errCRI) {
				t.Fatalf("ParseCRI(%q) error %v does not wrap errCRI", in, err)
			}
			return
		}
		if l.Stream != Stdout && l.Stream != Stderr {
			t.Fatalf("ParseCRI(%q) stream %q", in, l.Stream)
		}
		tag := "F"
		if l.Partial {
			tag = "P"
		}
		again := l.Time.Format(time.RFC3339Nano) + " " + l.Stream + " " + tag + " " + string(l.Content)
		r, err := ParseCRI([]byte(again))
		if err != nil {
			t.Fatalf("ParseCRI(%q) = %+v, but its rendering %q does not parse: %v", in, l, again, err)
		}
		if !r.Time.Equal(l.Time) || r.Stream != l.Stream || r.Partial != l.Partial || !bytes.Equal(r.Content, l.Content) {
			t.Fatalf("ParseCRI(%q) = %+v, rendering %q parses to %+v", in, l, again, r)
		}
	})
}

// parseConmonTime agrees with time.Parse wherever it answers: the same instant,
// and nothing time.Parse refuses.
func FuzzParseConmonTime(f *testing.F) {
	for _, s := range []string{
		"2026-11-25T00:06:14.404991023+00:00", "2024-02-29T23:59:59.999999999-12:30", "2023-02-29T00:00:00.000000000+00:00",
		"0000-01-01T00:00:00.000000000+00:00", "9999-12-31T23:59:59.999999999+23:59", "1969-12-31T23:59:59.000000001+01:00",
		"2026-13-01T00:00:00.000000000+00:00", "2026-11-25T24:00:00.000000000+00:00", "2026-11-25T00:06:14.4049910a3+00:00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, ok := parseConmonTime(in)
		if !ok {
			return
		}
		want, err := time.Parse(time.RFC3339Nano, string(in))
		if err != nil {
			t.Fatalf("parseConmonTime(%q) = %v, but time.Parse refuses it: %v", in, got, err)
		}
		if !got.Equal(want) {
			t.Fatalf("parseConmonTime(%q) = %v, time.Parse %v", in, got, want)
		}
	})
}

// conmon's own format takes the fast path.
func TestParseConmonTimeReadsConmonsFormat(t *testing.T) {
	for _, s := range []string{"2026-11-25T00:06:14.404991023+00:00", "2026-11-25T01:06:14.404991023+01:00", "1999-01-01T00:00:00.000000000-05:30"} {
		got, ok := parseConmonTime([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok || err != nil || !got.Equal(want) {
			t.Errorf("parseConmonTime(%s) = %v, %v; time.Parse %v, %v", s, got, ok, want, err)
		}
	}
}
