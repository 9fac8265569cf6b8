package source

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Stream names of container output, also the values of the stream label.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// CRILine is one line of a k8s-file (CRI) log:
//
//	2026-11-25T00:06:14.404991023+00:00 stdout F text
//
// Partial is true for a "P" line: conmon split a long line and the rest
// follows in the next line(s) of the same stream.
type CRILine struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content []byte // aliases the input
}

var errCRI = errors.New("not a CRI log line")

// ParseCRI parses one line without its trailing newline.
func ParseCRI(line []byte) (CRILine, error) {
	var l CRILine
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return l, fmt.Errorf("%w: no space after the time", errCRI)
	}
	t, ok := parseConmonTime(line[:sp])
	if !ok {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, string(line[:sp])); err != nil {
			return l, fmt.Errorf("%w: time: %v", errCRI, err)
		}
	}
	l.Time = t
	rest := line[sp+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("stdout ")):
		l.Stream, rest = Stdout, rest[7:]
	case bytes.HasPrefix(rest, []byte("stderr ")):
		l.Stream, rest = Stderr, rest[7:]
	default:
		return l, fmt.Errorf("%w: stream is neither stdout nor stderr", errCRI)
	}
	if len(rest) < 1 || (rest[0] != 'P' && rest[0] != 'F') {
		return l, fmt.Errorf("%w: tag is neither P nor F", errCRI)
	}
	l.Partial = rest[0] == 'P'
	rest = rest[1:]
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return l, fmt.Errorf("%w: no space after the tag", errCRI)
		}
		rest = rest[1:]
	}
	l.Content = rest
	return l, nil
}

// parseConmonTime reads the time as conmon writes it, 2026-11-25T00:06:14.404991023+00:00
// (nine digits, a numeric offset), and reports false for anything else,
// which time.Parse then reads or refuses. time.Parse was a sixth of the
// container reader's time.
func parseConmonTime(b []byte) (time.Time, bool) {
	if len(b) != 35 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' ||
		b[19] != '.' || (b[29] != '+' && b[29] != '-') || b[32] != ':' {
		return time.Time{}, false
	}
	ok := true
	num := func(s []byte) int64 {
		n := int64(0)
		for _, c := range s {
			if c < '0' || c > '9' {
				ok = false
			}
			n = n*10 + int64(c-'0')
		}
		return n
	}
	year, month, day := num(b[0:4]), num(b[5:7]), num(b[8:10])
	hour, minute, sec := num(b[11:13]), num(b[14:16]), num(b[17:19])
	nsec := num(b[20:29])
	offH, offM := num(b[30:32]), num(b[33:35])
	if !ok || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 || offH > 23 || offM > 59 {
		return time.Time{}, false
	}
	off := (offH*60 + offM) * 60
	if b[29] == '-' {
		off = -off
	}
	unix := daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + sec - off
	return time.Unix(unix, nsec), true
}

func daysIn(month, year int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the number of days from 1970-01-01 to the given date
// of the proleptic Gregorian calendar (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}
