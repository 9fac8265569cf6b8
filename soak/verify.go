package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The verifier, as Loki's canary does it: every writer's lines carry a
// sequence number, the soak records how many each writer wrote (the
// ledger's expectations), and at the end every line Loki holds is read back
// and counted against them. A line counted zero times is missing, a line
// counted twice a duplicate.

// Key names one sequence of lines: one stream of one writer, under its tenant.
type Key struct {
	Tenant string
	Stream string // Loki's stream label: stdout, stderr or file
	Name   string // the writer: a churn container (c00042), a zap app (zc0, zh1)
}

func (k Key) String() string { return k.Tenant + "/" + k.Stream + "/" + k.Name }

// Unknown is the count Expect takes for a writer that did not say how many
// lines it wrote (a container that did not exit 0): its lines are checked
// for duplicates only.
const Unknown = -1

// Ledger holds what was written and what Loki returned. Not safe for
// concurrent use.
type Ledger struct {
	sources map[Key]*tally
	foreign map[string]int // tenant → lines Loki returned that no writer of the soak writes
}

type tally struct {
	class string
	want  int     // lines 1..want written; Unknown
	seen  []uint8 // seen[seq] = times Loki returned line seq (saturating)
	over  int     // lines with a seq beyond want (or any, before Expect)
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{sources: map[Key]*tally{}, foreign: map[string]int{}}
}

func (l *Ledger) get(k Key) *tally {
	t := l.sources[k]
	if t == nil {
		t = &tally{want: Unknown}
		l.sources[k] = t
	}
	return t
}

// Expect records that k's writer, of class (for the report's grouping),
// wrote lines 1..n; n is Unknown when it cannot say.
func (l *Ledger) Expect(k Key, class string, n int) {
	t := l.get(k)
	t.class, t.want = class, n
}

// Observe counts one line Loki returned: k's line seq.
func (l *Ledger) Observe(k Key, seq int) {
	t := l.get(k)
	if seq < 1 || seq > maxSeq {
		t.over++
		return
	}
	if seq >= len(t.seen) {
		n := max(seq+1, 2*len(t.seen))
		grown := make([]uint8, n)
		copy(grown, t.seen)
		t.seen = grown
	}
	if t.seen[seq] < 255 {
		t.seen[seq]++
	}
}

// maxSeq bounds the sequence numbers Observe keeps one by one: no writer of
// the soak writes more lines than this, and a garbled number must not
// allocate gigabytes.
const maxSeq = 50_000_000

// Foreign counts a line of tenant's that is none of the soak's.
func (l *Ledger) Foreign(tenant string) { l.foreign[tenant]++ }

// Range is the sequence numbers First..Last.
type Range struct{ First, Last int }

func (r Range) String() string {
	if r.First == r.Last {
		return strconv.Itoa(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// SourceResult is one writer's verdict.
type SourceResult struct {
	Key     Key
	Class   string
	Want    int     // Unknown when the writer could not say
	Found   int     // lines Loki returned, copies included
	Missing int     // sequence numbers in 1..Want Loki lacks
	Dup     int     // extra copies: a line returned three times counts 2
	Beyond  int     // lines numbered outside 1..Want, or of a writer never expected
	Gaps    []Range // the missing sequence numbers, as ranges
	Dups    []int   // the duplicated sequence numbers
}

// OK is true when every line is there exactly once.
func (s SourceResult) OK() bool { return s.Missing == 0 && s.Dup == 0 && s.Beyond == 0 }

// Totals sums results.
type Totals struct {
	Sources, Written, Found, Missing, Dup, Beyond, Unknown int
}

func (t *Totals) add(s SourceResult) {
	t.Sources++
	if s.Want == Unknown {
		t.Unknown++
	} else {
		t.Written += s.Want
	}
	t.Found += s.Found
	t.Missing += s.Missing
	t.Dup += s.Dup
	t.Beyond += s.Beyond
}

// Result is the whole verdict.
type Result struct {
	Sources []SourceResult    // every writer, by key
	ByClass map[string]Totals // per class of writer
	All     Totals
	Foreign map[string]int // tenant → foreign lines
}

// Check compares what Loki returned with what was written.
func (l *Ledger) Check() Result {
	r := Result{ByClass: map[string]Totals{}, Foreign: l.foreign}
	for k, t := range l.sources {
		s := SourceResult{Key: k, Class: t.class, Want: t.want, Beyond: t.over}
		if s.Class == "" {
			s.Class = "unexpected"
		}
		for seq, n := range t.seen {
			if n == 0 {
				continue
			}
			s.Found += int(n)
			if t.class == "" || (t.want != Unknown && seq > t.want) {
				s.Beyond += int(n)
				continue
			}
			if n > 1 {
				s.Dup += int(n) - 1
				s.Dups = append(s.Dups, seq)
			}
		}
		s.Found += t.over
		for seq := 1; seq <= t.want; seq++ {
			if seq < len(t.seen) && t.seen[seq] > 0 {
				continue
			}
			s.Missing++
			if g := len(s.Gaps); g > 0 && s.Gaps[g-1].Last == seq-1 {
				s.Gaps[g-1].Last = seq
			} else {
				s.Gaps = append(s.Gaps, Range{seq, seq})
			}
		}
		r.Sources = append(r.Sources, s)
		c := r.ByClass[s.Class]
		c.add(s)
		r.ByClass[s.Class] = c
		r.All.add(s)
	}
	sort.Slice(r.Sources, func(i, j int) bool { return r.Sources[i].Key.String() < r.Sources[j].Key.String() })
	return r
}

// Failed lists the sources that are not exactly once.
func (r Result) Failed() []SourceResult {
	var out []SourceResult
	for _, s := range r.Sources {
		if !s.OK() {
			out = append(out, s)
		}
	}
	return out
}

// The soak's line formats, which parseLine reads back:
//
//	churn containers: "soak c00042 17 <padding>"    (stdout, and "soak c00042 17 err" on stderr)
//	zap apps' stdout: "zc0-17"                       (zaplog -echo zc0-)
//	zap apps' files:  zap JSON with "n":17           (stream="file", application="zc0")
var echoLine = regexp.MustCompile(`^(z[a-z]\d+)-(\d+)$`)

// parseLine maps a line Loki returned, with its stream's labels, to the
// writer and sequence number it came from; ok is false for a line that is
// none of the soak's.
func parseLine(tenant string, labels map[string]string, line string) (k Key, seq int, ok bool) {
	k = Key{Tenant: tenant, Stream: labels["stream"]}
	switch {
	case k.Stream == "file":
		var z struct {
			N *int `json:"n"`
		}
		if json.Unmarshal([]byte(line), &z) != nil || z.N == nil || labels["application"] == "" {
			return k, 0, false
		}
		k.Name = labels["application"]
		return k, *z.N, true
	case strings.HasPrefix(line, "soak "):
		f := strings.SplitN(line, " ", 4)
		if len(f) < 3 {
			return k, 0, false
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			return k, 0, false
		}
		k.Name = f[1]
		return k, n, true
	default:
		m := echoLine.FindStringSubmatch(line)
		if m == nil {
			return k, 0, false
		}
		n, _ := strconv.Atoi(m[2])
		k.Name = m[1]
		return k, n, true
	}
}
