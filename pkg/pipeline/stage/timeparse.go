package stage

import (
	"time"
)

// Epoch units for parseEpoch.
const (
	unitAuto = iota // chosen by magnitude
	unitS
	unitMs
	unitUs
	unitNs
)

// epochShift is the power of ten from each unit to nanoseconds.
var epochShift = [...]int{unitS: 9, unitMs: 6, unitUs: 3, unitNs: 0}

// parseEpoch reads a decimal number (JSON number syntax, optional leading
// '+', fraction and exponent allowed) as a time since the Unix epoch,
// exactly to the nanosecond: the digits are shifted, never converted
// through float64, and digits beyond the nanosecond are truncated.
//
// With unitAuto the unit follows the magnitude of the integer part:
// below 1e11 seconds (until the year 5138), below 1e14 milliseconds, below
// 1e17 microseconds, else nanoseconds. Times that do not fit time.Unix(0, ns)
// (years 1678 to 2262) are refused.
func parseEpoch(s string, unit int) (time.Time, bool) {
	if unit == unitAuto || unit == unitS {
		if t, ok := epochSeconds(s); ok {
			return t, true
		}
	}
	return parseEpochDigits(s, unit)
}

// epochSeconds is parseEpoch's path for zap's own format, seconds with up
// to nine decimals ("1732492800.123456"): at most ten integer digits are
// seconds whatever the unit rule, so the digits are summed as they come.
// It returns false for anything else, which parseEpochDigits then reads.
func epochSeconds(s string) (time.Time, bool) {
	var sec, frac uint64
	i := 0
	for ; i < len(s) && i < 10 && s[i] >= '0' && s[i] <= '9'; i++ {
		sec = sec*10 + uint64(s[i]-'0')
	}
	if i == 0 {
		return time.Time{}, false
	}
	scale := uint64(1e9)
	if i < len(s) {
		if s[i] != '.' {
			return time.Time{}, false // an 11th digit, an exponent, junk
		}
		j := i + 1
		for ; j < len(s) && j-i <= 9 && s[j] >= '0' && s[j] <= '9'; j++ {
			frac = frac*10 + uint64(s[j]-'0')
			scale /= 10
		}
		if j == i+1 || j < len(s) {
			return time.Time{}, false
		}
	}
	ns := sec*1e9 + frac*scale
	if ns > 1<<63-1 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ns)).UTC(), true
}

// parseEpochDigits is parseEpoch for any number.
func parseEpochDigits(s string, unit int) (time.Time, bool) {
	var mant [40]byte // significant digits, at most 40 kept (the rest only count)
	nm := 0           // digits stored in mant
	point := 0        // digits before the decimal point, among all significant digits
	i := 0
	neg := false
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	seen, dot, lead := false, false, true
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			seen = true
			if lead && c == '0' {
				if dot {
					point-- // 0.00123: leading zeros after the point
				}
				continue
			}
			lead = false
			if nm < len(mant) {
				mant[nm] = c - '0'
				nm++
			} else if !dot {
				return time.Time{}, false // over 40 integer digits
			}
			if !dot {
				point++
			}
		case c == '.' && !dot:
			dot = true
		default:
			goto exp
		}
	}
exp:
	if !seen {
		return time.Time{}, false
	}
	if i < len(s) {
		if s[i] != 'e' && s[i] != 'E' {
			return time.Time{}, false
		}
		i++
		eneg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			eneg = s[i] == '-'
			i++
		}
		if i >= len(s) {
			return time.Time{}, false
		}
		e := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			if e < 1000 {
				e = e*10 + int(c-'0')
			}
		}
		if eneg {
			e = -e
		}
		point += e
	}
	if nm == 0 {
		return time.Unix(0, 0), true
	}
	// The value is 0.d1d2d3... * 10^point.
	if unit == unitAuto {
		switch {
		case point <= 11:
			unit = unitS
		case point <= 14:
			unit = unitMs
		case point <= 17:
			unit = unitUs
		default:
			unit = unitNs
		}
	}
	n := point + epochShift[unit] // digits of the value in nanoseconds
	if n > 19 {
		return time.Time{}, false
	}
	var ns uint64
	for k := 0; k < n; k++ {
		d := uint64(0)
		if k < nm {
			d = uint64(mant[k])
		}
		ns = ns*10 + d
	}
	if ns > 1<<63-1 {
		return time.Time{}, false
	}
	v := int64(ns)
	if neg {
		v = -v
	}
	return time.Unix(0, v).UTC(), true
}

// looksNumeric reports whether s starts like a number (an epoch in text).
func looksNumeric(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	if c == '-' || c == '+' {
		if len(s) == 1 {
			return false
		}
		c = s[1]
	}
	return c >= '0' && c <= '9' && !(len(s) >= 5 && s[4] == '-')
}

// parseTimeText reads the time formats loggers write as text: RFC 3339 /
// ISO 8601 with a 'T' or a space between date and time, any fraction, and a
// zone written Z, ±hh:mm, ±hhmm or ±hh (zap's ISO8601TimeEncoder writes
// "2006-01-02T15:04:05.000Z0700"); without a zone the time is UTC. Text
// that is a number is an epoch (see parseEpoch).
func parseTimeText(s string) (time.Time, bool) {
	if looksNumeric(s) {
		return parseEpoch(s, unitAuto)
	}
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' {
		return time.Time{}, false
	}
	sep := 0 // 'T'
	switch s[10] {
	case ' ':
		sep = 1
	case 't':
		sep = 2
	}
	zone := zoneSuffix(s)
	var kind int
	switch {
	case zone == "":
		t, err := time.ParseInLocation(isoLayouts[sep][0], s, time.UTC)
		return t, err == nil
	case zone == "z":
		s = s[:len(s)-1] + "Z"
		kind = 1
	case zone == "Z" || len(zone) == 6: // Z or +07:00
		kind = 1
	case len(zone) == 5: // +0700
		kind = 2
	case len(zone) == 3: // +07
		kind = 3
	default:
		return time.Time{}, false
	}
	t, err := time.Parse(isoLayouts[sep][kind], s)
	return t, err == nil
}

// isoLayouts by date-time separator (T, space, t) and zone form (none,
// Z07:00, Z0700, Z07). Fractions need no layout element when parsing.
var isoLayouts = [3][4]string{
	{"2006-01-02T15:04:05", "2006-01-02T15:04:05Z07:00", "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05Z07"},
	{"2006-01-02 15:04:05", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05Z0700", "2006-01-02 15:04:05Z07"},
	{"2006-01-02t15:04:05", "2006-01-02t15:04:05Z07:00", "2006-01-02t15:04:05Z0700", "2006-01-02t15:04:05Z07"},
}

// zoneSuffix returns the zone designator at the end of an ISO 8601 time,
// or "" when there is none.
func zoneSuffix(s string) string {
	n := len(s)
	if s[n-1] == 'Z' || s[n-1] == 'z' {
		return s[n-1:]
	}
	// Look back at most 6 bytes for a sign after the seconds (index 19+).
	for k := n - 1; k >= n-6 && k >= 19; k-- {
		if s[k] == '+' || s[k] == '-' {
			return s[k:]
		}
	}
	return ""
}
