package stage

import (
	"errors"
	"strings"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// LevelUnknown is the log_level of a zap line whose level is missing or not
// one of zap's.
const LevelUnknown = "unknown"

// zapLevels are zap's level names, lower case, as zapcore writes them.
var zapLevels = [...]string{"debug", "info", "warn", "error", "dpanic", "panic", "fatal"}

// zapLevel returns zap's name for s compared case-insensitively (zap's
// console encoder writes "INFO"), or "" when s is not a zap level.
func zapLevel(s string) string {
	switch s { // zap's production encoder: no need to fold case
	case "info":
		return "info"
	case "debug":
		return "debug"
	case "warn":
		return "warn"
	case "error":
		return "error"
	}
	if len(s) < 4 || len(s) > 6 {
		return ""
	}
	for _, l := range zapLevels {
		if strings.EqualFold(s, l) {
			return l
		}
	}
	return ""
}

// zapStage parses lines of zap's encoders (type zap), or JSON container
// output (type json_auto). The line itself is never changed.
//
// For a JSON object (zap's production encoder):
//   - level_key ("level") -> label log_level: zap's levels in lower case;
//     anything else, or (zap only) a missing level, is "unknown";
//   - time_key ("ts") -> the record's time: a number or numeric text is an
//     epoch, exact to the nanosecond, unit by magnitude (seconds, millis,
//     micros or nanos; zap's default is float seconds); other text is
//     RFC 3339 / ISO 8601 (see parseTimeText);
//   - caller_key ("caller") -> structured metadata "caller";
//   - every top-level string, number and boolean -> Fields under its own
//     key, and message_key ("msg") also under "msg". Objects, arrays and
//     nulls are skipped; stacktrace is a field like any other: it stays in
//     the line and is not made metadata (it is large; Loki caps metadata).
//
// zap only: a line that is not a JSON object is tried as zap's console
// encoder, "TIME\tLEVEL\t[NAME\t]CALLER\tMSG...": a zap level in the second
// column sets log_level (also in the first column, when the time is not
// encoded), a time in the first sets the time, and a column that looks like
// a Go caller (file.go:N) becomes "caller". Anything else is left alone,
// with no label.
//
// json_auto: only a line starting with '{' that is one JSON object is
// touched, and only what is present is set.
//
// action_on_failure (zap: fudge, json_auto: skip) says what time a line
// gets when it carries none: skip keeps the time the source gave it; fudge
// gives it the last time this stage read from a line plus 1ns per such line
// (as Promtail's timestamp stage does), so that a line without a time read
// from a file with a backlog is not stamped with the time it was read,
// which would put the lines after it too far behind for Loki. Before the
// first time is read, fudge keeps the source's time.
type zapStage struct {
	auto                                 bool
	levelKey, timeKey, callerKey, msgKey string
	fudge                                bool
	last                                 time.Time // last time read from a line
	lastOK                               bool
	noFields                             bool // nothing after this stage reads Fields (see SkipFields)
}

var _ pipeline.FieldsSkipper = (*zapStage)(nil)

type zapOptions struct {
	LevelKey        string `mapstructure:"level_key"`
	TimeKey         string `mapstructure:"time_key"`
	CallerKey       string `mapstructure:"caller_key"`
	MessageKey      string `mapstructure:"message_key"`
	ActionOnFailure string `mapstructure:"action_on_failure"`
}

func newZapStage(spec map[string]any, auto bool) (*zapStage, error) {
	o := zapOptions{LevelKey: "level", TimeKey: "ts", CallerKey: "caller", MessageKey: "msg", ActionOnFailure: "fudge"}
	if auto {
		o.ActionOnFailure = "skip"
	}
	err := decode(spec, &o)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, kv := range [][2]string{{"level_key", o.LevelKey}, {"time_key", o.TimeKey}, {"caller_key", o.CallerKey}, {"message_key", o.MessageKey}} {
		if kv[1] == "" {
			errs = append(errs, optErrorf(kv[0], "must not be empty"))
		}
	}
	fudge, ferr := parseActionOnFailure(o.ActionOnFailure)
	if ferr != nil {
		errs = append(errs, ferr)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &zapStage{auto: auto, levelKey: o.LevelKey, timeKey: o.TimeKey, callerKey: o.CallerKey, msgKey: o.MessageKey, fudge: fudge}, nil
}

func parseActionOnFailure(s string) (fudge bool, err error) {
	switch s {
	case "fudge":
		return true, nil
	case "skip":
		return false, nil
	}
	return false, optErrorf("action_on_failure", "%q is not fudge or skip", s)
}

// SkipFields implements pipeline.FieldsSkipper: nothing after this stage
// reads Fields (a Stream tells its pipeline's last stage so), so only the
// level, time and caller are read from a line (see fromJSON).
func (s *zapStage) SkipFields() { s.noFields = true }

// Process implements Stage.
func (s *zapStage) Process(r *pipeline.Record) (bool, string) {
	line := firstLine(r.Line)
	i := skipWS(line, 0)
	if i < len(line) && line[i] == '{' {
		if valid, timed := s.fromJSON(r, line); valid && timed {
			return true, ""
		}
	} else if !s.auto && s.console(r) {
		return true, ""
	}
	s.noTime(r)
	return true, ""
}

// zapMember is one top-level member, held until the object is known to be
// valid (nothing is set from a line that turns out not to be JSON).
type zapMember struct {
	key    string
	keyEsc bool
	val    jsonValue
}

// firstLine is line up to its first newline: an entry joined by the
// multiline stage (a zap line, then a panic's trace) is read by its first
// line, the app's own; a JSON object never holds a raw newline.
func firstLine(line string) string {
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		return line[:i]
	}
	return line
}

// fromJSON reads text, r's line (or its first line) that starts with '{';
// it reports whether text is one JSON object and whether it carried a time.
func (s *zapStage) fromJSON(r *pipeline.Record, text string) (valid, timed bool) {
	if !s.noFields {
		return s.fromJSONFields(r, text)
	}
	// Nothing reads Fields (the usual case: zap is the last stage), so only
	// level, time and caller matter: one pass keeps the last of each (a
	// repeated key's last value wins, as in encoding/json), and they are
	// applied once the whole object is known to be valid.
	m, ok := s.scan(text)
	if !ok {
		return false, false
	}
	var st zapState
	if m.haveLevel {
		st.haveLevel = true
		st.level = zapLevel(m.level.text())
	}
	if m.haveTime {
		if t, ok := jsonTime(m.ts); ok {
			r.Time, st.haveTime = t, true
		}
	}
	if m.haveCaller && m.caller.kind == jsonString {
		r.SetMetadata("caller", m.caller.text())
	}
	s.apply(r, &st)
	return true, st.haveTime
}

// zapMembers are the members fromJSON uses, the last of each.
type zapMembers struct {
	level, ts, caller               jsonValue
	haveLevel, haveTime, haveCaller bool
}

// scan walks the members of the object line in one loop, accepting
// exactly what objectIter accepts (the fuzz test holds both to
// encoding/json), and keeps the last value of the level, time and caller
// keys. ok is false when line is not exactly one JSON object. (objectIter
// per member, with its state kept between calls, was a tenth more.)
func (s *zapStage) scan(line string) (m zapMembers, ok bool) {
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return m, false
	}
	i = skipWS(line, i+1)
	if i < len(line) && line[i] == '}' {
		return m, skipWS(line, i+1) == len(line)
	}
	for {
		if i >= len(line) || line[i] != '"' {
			return m, false
		}
		end, esc := scanString(line, i)
		if end < 0 {
			return m, false
		}
		key := line[i+1 : end-1]
		if esc {
			key = jsonUnquote(key, true)
		}
		i = skipWS(line, end)
		if i >= len(line) || line[i] != ':' {
			return m, false
		}
		i = skipWS(line, i+1)
		end, v := scanValue(line, i, 1)
		if end < 0 {
			return m, false
		}
		switch key {
		case s.levelKey:
			m.level, m.haveLevel = v, true
		case s.timeKey:
			m.ts, m.haveTime = v, true
		case s.callerKey:
			m.caller, m.haveCaller = v, true
		}
		i = skipWS(line, end)
		if i >= len(line) {
			return m, false
		}
		switch line[i] {
		case '}':
			return m, skipWS(line, i+1) == len(line)
		case ',':
			i = skipWS(line, i+1)
		default:
			return m, false
		}
	}
}

// fromJSONFields is fromJSON for a stage whose Fields a later stage reads:
// every scalar member is a field.
func (s *zapStage) fromJSONFields(r *pipeline.Record, text string) (valid, timed bool) {
	// One pass for the usual line: members go to a buffer on the stack and
	// are applied once the whole object has been seen to be valid. Longer
	// objects are validated first, then walked again.
	var buf [16]zapMember
	n := 0
	it := newObjectIter(text)
	for it.next() {
		if n < len(buf) {
			buf[n] = zapMember{key: it.key, keyEsc: it.keyEsc, val: it.val}
		}
		n++
	}
	if !it.valid() {
		return false, false
	}
	var st zapState
	if n <= len(buf) {
		for i := range buf[:n] {
			s.member(r, &st, &buf[i])
		}
	} else {
		it := newObjectIter(text)
		for it.next() {
			s.member(r, &st, &zapMember{key: it.key, keyEsc: it.keyEsc, val: it.val})
		}
	}
	s.apply(r, &st)
	return true, st.haveTime
}

// apply sets what a valid object gave: the level label, and the time kept
// for lines without one.
func (s *zapStage) apply(r *pipeline.Record, st *zapState) {
	if st.haveLevel || !s.auto {
		if st.level == "" {
			st.level = LevelUnknown
		}
		setLabel(r, pipeline.LabelLogLevel, st.level)
	}
	if st.haveTime {
		s.last, s.lastOK = r.Time, true
	}
}

type zapState struct {
	level               string
	haveLevel, haveTime bool
}

func (s *zapStage) member(r *pipeline.Record, st *zapState, m *zapMember) {
	key := m.key
	if m.keyEsc {
		key = jsonUnquote(key, true)
	}
	v := m.val
	switch key {
	case s.levelKey:
		st.haveLevel = true
		st.level = zapLevel(v.text())
	case s.timeKey:
		if t, ok := jsonTime(v); ok {
			r.Time, st.haveTime = t, true
		}
	case s.callerKey:
		if v.kind == jsonString {
			r.SetMetadata("caller", v.text())
		}
	}
	if !s.noFields && v.scalar() {
		txt := v.text()
		setField(r, key, txt)
		if key == s.msgKey && key != "msg" {
			setField(r, "msg", txt)
		}
	}
}

// jsonTime reads a time value: a number, or text.
func jsonTime(v jsonValue) (time.Time, bool) {
	switch v.kind {
	case jsonNumber:
		return parseEpoch(v.raw, unitAuto)
	case jsonString:
		return parseTimeText(v.text())
	}
	return time.Time{}, false
}

// noTime applies action_on_failure to a line that carried no time.
func (s *zapStage) noTime(r *pipeline.Record) {
	if s.fudge && s.lastOK {
		s.last = s.last.Add(time.Nanosecond)
		r.Time = s.last
	}
}

// console reads zap's console encoding; it reports whether it found a time.
func (s *zapStage) console(r *pipeline.Record) bool {
	line := firstLine(r.Line)
	col0, rest, ok := strings.Cut(line, "\t")
	if !ok {
		return false
	}
	col1, rest, _ := strings.Cut(rest, "\t")
	var t time.Time
	haveTime := false
	level := zapLevel(stripANSI(col1))
	if level != "" {
		t, haveTime = parseTimeText(col0)
	} else if level = zapLevel(stripANSI(col0)); level != "" {
		rest = col1 + "\t" + rest // no time column: col1 may be the caller
	} else {
		return false
	}
	setLabel(r, pipeline.LabelLogLevel, level)
	// The caller is the first of the next two columns (the logger name is
	// optional) that looks like file.go:line.
	for k := 0; k < 2 && rest != ""; k++ {
		var c string
		c, rest, _ = strings.Cut(rest, "\t")
		if looksLikeCaller(c) {
			r.SetMetadata("caller", c)
			break
		}
	}
	if haveTime {
		r.Time = t
		s.last, s.lastOK = t, true
	}
	return haveTime
}

// looksLikeCaller matches zap's caller encoders: "pkg/file.go:42".
func looksLikeCaller(c string) bool {
	i := strings.LastIndexByte(c, ':')
	if i < 4 || i == len(c)-1 || !strings.HasSuffix(c[:i], ".go") || strings.ContainsAny(c, " \t") {
		return false
	}
	return digits(c, i+1) == len(c)
}

// stripANSI removes terminal colour sequences (zap's CapitalColorLevelEncoder
// writes "\x1b[34mINFO\x1b[0m").
func stripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
