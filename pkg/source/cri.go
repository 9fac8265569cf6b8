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
	t, err := time.Parse(time.RFC3339Nano, string(line[:sp]))
	if err != nil {
		return l, fmt.Errorf("%w: time: %v", errCRI, err)
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
