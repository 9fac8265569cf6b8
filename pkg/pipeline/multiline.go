package pipeline

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Multiline joins the lines of one multi-line entry (a Go panic and its
// goroutine dump, a stack trace printed after a console log line) into one,
// like Promtail's multiline stage. It is not a Stage: it keeps lines across
// calls and is driven by time, so the source calls it before the pipeline,
// one Multiline per stream, from one goroutine.
//
// A line matching first_line starts a new entry and completes the pending
// one; any other line is appended to the pending entry (or starts one when
// nothing is pending, e.g. at the start of a file). Lines are joined with
// "\n". An entry is complete when the next first line arrives, when it has
// max_lines lines (default 128; the next line starts a new entry), or when
// max_wait (default 3s) has passed since its last line (Flush, or the next
// Add). Every line ends up in exactly one entry, in order.
//
// Note that each entry waits for the line after it (or max_wait), so with
// first_line `^\{` on zap JSON every line is delayed until the next one.
//
// Positions: a joined entry carries the Pos of its last line and the Time
// of its first. The source must treat the positions of pending lines as not
// delivered: only when the joined entry is delivered (acknowledged by Loki)
// does the position move past them. So an entry still pending at shutdown
// (or one not yet acknowledged) is read again from its first line after a
// restart and comes out whole, never as a torn tail. (The source's restart
// point must therefore be the position before the entry's first line, which
// is the last acknowledged Pos.)
//
// Config: first_line (RE2, required; Promtail's name firstline is accepted
// too), max_lines, max_wait (Promtail's max_wait_time is accepted too). The
// spec form (a map, with those aliases) is read by
// stage.NewMultilineFromSpec (pkg/pipeline/stage).
type Multiline struct {
	first    *regexp.Regexp
	maxLines int
	maxWait  time.Duration

	lines []string  // pending entry
	t     time.Time // time of its first line
	pos   int64     // position of its last line
	at    time.Time // when its last line was added (the now of Add)
}

// Joined is one complete entry.
type Joined struct {
	Line string
	Time time.Time // of the first line
	Pos  int64     // of the last line
}

// MultilineConfig configures a Multiline.
type MultilineConfig struct {
	// FirstLine matches the first line of an entry, e.g. `^\{` for zap's
	// JSON or `^\d{4}-\d{2}-\d{2}T` for lines that start with a time.
	FirstLine string `mapstructure:"first_line"`
	// MaxLines cuts an entry at this many lines (default 128).
	MaxLines int `mapstructure:"max_lines"`
	// MaxWait completes an entry this long after its last line (default 3s).
	MaxWait time.Duration `mapstructure:"max_wait"`
}

// NewMultiline checks cfg and returns an empty Multiline. Zero MaxLines and
// MaxWait take the defaults.
func NewMultiline(cfg MultilineConfig) (*Multiline, error) {
	var errs []error
	if cfg.MaxLines == 0 {
		cfg.MaxLines = 128
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 3 * time.Second
	}
	var re *regexp.Regexp
	if cfg.FirstLine == "" {
		errs = append(errs, errors.New("first_line: required"))
	} else {
		var err error
		if re, err = regexp.Compile(cfg.FirstLine); err != nil {
			errs = append(errs, fmt.Errorf("first_line: %w", err))
		}
	}
	if cfg.MaxLines < 1 {
		errs = append(errs, errors.New("max_lines: must be at least 1"))
	}
	if cfg.MaxWait < 0 {
		errs = append(errs, errors.New("max_wait: must not be negative"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Multiline{first: re, maxLines: cfg.MaxLines, maxWait: cfg.MaxWait}, nil
}

// Add takes the next line, its time and position, and now (the time it was
// read, which max_wait counts from). It returns the entries this completes:
// a pending entry whose max_wait had already passed, the pending entry when
// line is a first line, and the new entry when it reaches max_lines.
func (m *Multiline) Add(line string, t time.Time, pos int64, now time.Time) []Joined {
	var out []Joined
	if len(m.lines) > 0 && (m.first.MatchString(line) || !now.Before(m.at.Add(m.maxWait))) {
		out = append(out, m.take())
	}
	if len(m.lines) == 0 {
		m.t = t
	}
	m.lines = append(m.lines, line)
	m.pos, m.at = pos, now
	if len(m.lines) >= m.maxLines {
		out = append(out, m.take())
	}
	return out
}

// Flush returns the pending entry when max_wait has passed since its last
// line, or at once when force is set (e.g. at shutdown, or when the file
// ends for good).
func (m *Multiline) Flush(now time.Time, force bool) []Joined {
	if len(m.lines) == 0 || (!force && now.Before(m.at.Add(m.maxWait))) {
		return nil
	}
	return []Joined{m.take()}
}

// Deadline is when the pending entry is due (for the source's timer); ok
// is false when nothing is pending.
func (m *Multiline) Deadline() (time.Time, bool) {
	if len(m.lines) == 0 {
		return time.Time{}, false
	}
	return m.at.Add(m.maxWait), true
}

// Pending is the number of lines waiting.
func (m *Multiline) Pending() int { return len(m.lines) }

func (m *Multiline) take() Joined {
	var line string
	if len(m.lines) == 1 {
		line = m.lines[0]
	} else {
		line = strings.Join(m.lines, "\n")
	}
	j := Joined{Line: line, Time: m.t, Pos: m.pos}
	clear(m.lines)
	m.lines = m.lines[:0]
	if cap(m.lines) > 1024 {
		m.lines = nil
	}
	return j
}
