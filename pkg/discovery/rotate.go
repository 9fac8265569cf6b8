package discovery

import (
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The names rotation gives a live file's older copies. logrotate: name.N,
// and with dateext name<dateformat>, whose default is -%Y%m%d (-%Y%m%d%H
// when hourly) and which may use only %Y %m %d %H %M %S %V and %s with any
// separators (-%Y%m%d-%s for several rotations a day, -%Y-%m-%d, ...); with
// compress, .gz after either. lumberjack: <name less its extension>-
// 2006-01-02T15-04-05.000<extension>, .gz after it with Compress.
var (
	numberedSuffix = regexp.MustCompile(`^(.+)\.[0-9]+$`)
	// A date first (year, month and day, each separator optional), then
	// anything logrotate's other specifiers make: digits and separators.
	// Requiring a real-looking date keeps names like app.log-v2 or
	// app.log-final apart from rotated copies.
	datedSuffix = regexp.MustCompile(`^(.+?)[-._](?:19|20)[0-9]{2}[-_.]?(?:0[1-9]|1[0-2])[-_.]?(?:0[1-9]|[12][0-9]|3[01])[-_.0-9]*$`)
	// dateformat -%s alone: Unix seconds (9 or 10 digits since 2001).
	epochSuffix      = regexp.MustCompile(`^(.+)-[0-9]{9,10}$`)
	lumberjackBackup = regexp.MustCompile(`^(.+)-[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}-[0-9]{2}\.[0-9]{3}(\.[^.]*)?$`)
)

// RotatedBase returns the name of the live file that name is a rotated copy
// of (app.log for app.log.1, app.log.2.gz, app.log-20261206,
// app.log-2026120613.gz, app.log-20261206-1796546611, app.log.gz, and
// lumberjack's app-2026-12-06T01-02-03.000.log(.gz)), or name itself when it
// is not one; gz says name is gzip-compressed (ends in .gz). Only one
// rotation suffix is taken off: app.log.1.1 is app.log.1's copy.
func RotatedBase(name string) (base string, gz bool) {
	stem, gz := strings.CutSuffix(name, ".gz")
	if stem == "" {
		return name, false // ".gz" is a file of its own name, not a copy
	}
	if m := lumberjackBackup.FindStringSubmatch(stem); m != nil {
		return m[1] + m[2], gz
	}
	for _, re := range []*regexp.Regexp{numberedSuffix, datedSuffix, epochSuffix} {
		if m := re.FindStringSubmatch(stem); m != nil {
			return m[1], gz
		}
	}
	return stem, gz
}

// Reads says whether a file of a log directory is read, by name: it is if
// it, or the live file it is a rotated copy of (RotatedBase), matches an
// include glob, and neither matches an exclude glob, so that excluding
// debug.log excludes debug.log.1 too and excluding *.gz excludes every
// compressed copy.
func (r *FileRules) Reads(name string) bool {
	base, _ := RotatedBase(name)
	if anyMatch(r.Exclude, name) || anyMatch(r.Exclude, base) {
		return false
	}
	return anyMatch(r.Include, name) || anyMatch(r.Include, base)
}

// ValidGlob says whether g is a well-formed filepath.Match pattern (on
// Unix). Match itself cannot tell: it stops at the first mismatch and may
// never reach a malformed part, so Match("x*[", "") is false with no error
// while Match("x*[", "x") is ErrBadPattern. This walks the whole pattern as
// Match would: an escape must escape something, and a character class must
// be closed and hold at least one character or range, none of them a bare
// '-' or ']' or invalid UTF-8.
func ValidGlob(g string) bool {
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '\\':
			if i++; i == len(g) {
				return false
			}
		case '[':
			i++
			if i < len(g) && g[i] == '^' {
				i++
			}
			for n := 0; i == len(g) || g[i] != ']' || n == 0; n++ {
				var ok bool
				if i, ok = classChar(g, i); !ok {
					return false
				}
				if i < len(g) && g[i] == '-' {
					if i, ok = classChar(g, i+1); !ok {
						return false
					}
				}
			}
		}
	}
	return true
}

// classChar steps over one character of a class at g[i], escaped or not,
// and says whether Match takes it there.
func classChar(g string, i int) (int, bool) {
	if i >= len(g) || g[i] == '-' || g[i] == ']' {
		return i, false
	}
	if g[i] == '\\' {
		if i++; i == len(g) {
			return i, false
		}
	}
	r, n := utf8.DecodeRuneInString(g[i:])
	return i + n, r != utf8.RuneError || n != 1
}

// anyMatch says whether name matches one of globs. NewFileRules checked the
// globs (ValidGlob), so Match's only error cannot happen.
func anyMatch(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, name); ok {
			return true
		}
	}
	return false
}
