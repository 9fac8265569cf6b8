package stage

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJSONStage pins Promtail's json stage: top-level and nested paths,
// quoted keys, indexes, source, what is set for each kind of value, and
// malformed input.
func TestJSONStage(t *testing.T) {
	p := mustBuild(t, map[string]any{"type": "json", "expressions": map[string]any{
		"level": "", "user": "ctx.user", "rid": `ctx."x-request-id"`, "first": "items[0].id", "obj": "ctx",
		"n": "num", "b": "ok", "nil": "none", "missing": "ctx.nope", "esc": "esc", "dot": `"a.b"`,
	}})
	line := `{"level":"warn","ctx":{"user":"ann","x-request-id":"r-1"},"items":[{"id":7},{"id":8}],"num":1.5,"ok":true,"none":null,"esc":"a\nb","a.b":"d"}`
	r, keep, _ := process(p, line)
	want := map[string]string{
		"level": "warn", "user": "ann", "rid": "r-1", "first": "7", "obj": `{"user":"ann","x-request-id":"r-1"}`,
		"n": "1.5", "b": "true", "esc": "a\nb", "dot": "d",
	}
	if !keep || r.Line != line || !maps.Equal(r.Fields, want) {
		t.Errorf("fields = %v, want %v", r.Fields, want)
	}

	// source reads a field; malformed input is left alone or dropped.
	p = mustBuild(t,
		map[string]any{"type": "regex", "expression": `^(?P<ts>\S+) (?P<body>.*)$`},
		map[string]any{"type": "json", "source": "body", "expressions": map[string]any{"code": "err.code"}})
	r, _, _ = process(p, `2024-01-01T00:00:00Z {"err":{"code":"E42"}}`)
	if r.Fields["code"] != "E42" {
		t.Errorf("source: %v", r.Fields)
	}
	r, keep, _ = process(p, `nospace`)
	if !keep || len(r.Fields) != 0 {
		t.Errorf("missing source: keep=%v %v", keep, r.Fields)
	}
	p = mustBuild(t, map[string]any{"type": "json", "expressions": map[string]any{"a": ""}, "drop_malformed": true})
	if _, keep, reason := process(p, `{"a":`); keep || reason != "malformed_json" {
		t.Errorf("drop_malformed: keep=%v reason=%q", keep, reason)
	}
	if r, keep, _ := process(p, `{"a":"x"}`); !keep || r.Fields["a"] != "x" {
		t.Errorf("valid line with drop_malformed: %v %v", keep, r.Fields)
	}
	// An earlier stage's value stays when the path is missing or null.
	p = mustBuild(t, map[string]any{"type": "zap"}, map[string]any{"type": "json", "expressions": map[string]any{"level": "x.level"}})
	if r, _, _ := process(p, `{"level":"info","x":{"level":null}}`); r.Fields["level"] != "info" {
		t.Errorf("earlier value: %v", r.Fields)
	}
}

// TestParsePath pins the path syntax.
func TestParsePath(t *testing.T) {
	for in, want := range map[string]string{
		"a": "a", "a.b": "a/b", `"a.b".c`: "a.b/c", "a[0][1].b": "a/#0/#1/b", `a."x y"`: "a/x y", "a-b_c@$": "a-b_c@$",
	} {
		p, err := parsePath(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		var parts []string
		for _, s := range p {
			if s.index >= 0 {
				parts = append(parts, "#"+strconv.Itoa(s.index))
			} else {
				parts = append(parts, s.key)
			}
		}
		if got := strings.Join(parts, "/"); got != want {
			t.Errorf("%q = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", "[0]", "a[", "a[-1]", "a[x]", `"a`, "a b", "a]"} {
		if _, err := parsePath(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestLogfmt pins the logfmt stage: mapping, extract-all, quoting and
// escapes, bare keys, garbage.
func TestLogfmt(t *testing.T) {
	all := mustBuild(t, map[string]any{"type": "logfmt"})
	line := `level=info msg="hello \"world\"\n" empty= bare path=/a=b q="" uni="caf\u00e9" tab="a\tb" junk"x =nokey "lone`
	r, _, _ := process(all, line)
	want := map[string]string{"level": "info", "msg": "hello \"world\"\n", "empty": "", "bare": "", "path": "/a=b", "q": "", "uni": "café", "tab": "a\tb", "junk": ""}
	if !maps.Equal(r.Fields, want) || r.Line != line {
		t.Errorf("fields =\n%q, want\n%q", r.Fields, want)
	}
	p := mustBuild(t, map[string]any{"type": "logfmt", "mapping": map[string]any{"lvl": "level", "msg": "", "dur": "duration"}})
	r, _, _ = process(p, `ts=1 level=error msg="x y" duration=5ms other=1`)
	if want := map[string]string{"lvl": "error", "msg": "x y", "dur": "5ms"}; !maps.Equal(r.Fields, want) {
		t.Errorf("mapping: %v", r.Fields)
	}
	r, _, _ = process(all, `a="unterminated \" value`)
	if r.Fields["a"] != `unterminated \" value` {
		t.Errorf("unterminated: %q", r.Fields["a"])
	}
	r, _, _ = process(all, `a="json \/ slash" b="bad \q"`)
	if r.Fields["a"] != "json / slash" || r.Fields["b"] != `bad \q` {
		t.Errorf("escapes: %q", r.Fields)
	}
}

// logfmtEncode writes pairs so that logfmtNext reads them back.
func logfmtEncode(keys, vals []string) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		v := vals[i]
		if v == "" || strings.ContainsAny(v, "\"\\=") || strings.IndexFunc(v, func(r rune) bool { return r <= ' ' }) >= 0 || !utf8Valid(v) {
			b.WriteString(strconv.Quote(v))
		} else {
			b.WriteString(v)
		}
	}
	return b.String()
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

func logfmtPairs(s string) (keys, vals []string) {
	for i := 0; ; {
		k, v, next, done := logfmtNext(s, i)
		if done {
			return
		}
		if next <= i {
			panic("no progress")
		}
		i = next
		keys, vals = append(keys, k), append(vals, v)
	}
}

// FuzzLogfmt: never panics, always progresses, and what it reads, written
// back as logfmt, reads the same.
func FuzzLogfmt(f *testing.F) {
	for _, s := range []string{`a=1 b="x y" c`, `="x" =`, `a="\u00e9\n\"" b=\`, `k="unterminated`, "a=\xff b=\x00", `a="\x41"`} {
		f.Add(s)
	}
	p := mustBuild(f, map[string]any{"type": "logfmt"})
	f.Fuzz(func(t *testing.T, s string) {
		p.Process(rec(s))
		keys, vals := logfmtPairs(s)
		k2, v2 := logfmtPairs(logfmtEncode(keys, vals))
		if strings.Join(keys, "\x00") != strings.Join(k2, "\x00") || strings.Join(vals, "\x00") != strings.Join(v2, "\x00") {
			t.Fatalf("%q: read %q=%q, written back and read %q=%q", s, keys, vals, k2, v2)
		}
	})
}

// TestRegex pins the regex stage: named groups that took part, source.
func TestRegex(t *testing.T) {
	p := mustBuild(t, map[string]any{"type": "regex", "expression": `^(?P<user>[^/]+)/(?P<app>[^/]+)(?:/(?P<opt>x))?(\d*)`})
	r, _, _ := process(p, "beiluo/test777/y")
	if want := map[string]string{"user": "beiluo", "app": "test777"}; !maps.Equal(r.Fields, want) {
		t.Errorf("fields = %v", r.Fields)
	}
	r, _, _ = process(p, "nomatch")
	if len(r.Fields) != 0 {
		t.Errorf("no match: %v", r.Fields)
	}
	p = mustBuild(t,
		map[string]any{"type": "logfmt"},
		map[string]any{"type": "regex", "source": "file", "expression": `(?P<user>[^_]+)_(?P<app>[^_]+)_(?P<version>v\d+)\.log$`})
	r, _, _ = process(p, `file=beiluo_testapi_v2.log`)
	if r.Fields["version"] != "v2" || r.Fields["app"] != "testapi" {
		t.Errorf("source: %v", r.Fields)
	}
}

// TestTimestamp pins the timestamp stage: named formats, Go layouts,
// fallbacks, location, epochs exactly, fudge and skip.
func TestTimestamp(t *testing.T) {
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	cases := []struct {
		spec map[string]any
		val  string
		want time.Time
	}{
		{map[string]any{"format": "RFC3339"}, "2024-11-25T08:00:00+08:00", time.Unix(1732492800, 0)},
		{map[string]any{"format": "RFC3339Nano"}, "2024-11-25T00:00:00.123456789Z", time.Unix(1732492800, 123456789)},
		{map[string]any{"format": "Unix"}, "1732492800.123456", time.Unix(1732492800, 123456000)},
		{map[string]any{"format": "Unix"}, "1732492800", time.Unix(1732492800, 0)},
		{map[string]any{"format": "UnixMs"}, "1732492800123", time.Unix(1732492800, 123000000)},
		{map[string]any{"format": "UnixUs"}, "1732492800123456", time.Unix(1732492800, 123456000)},
		{map[string]any{"format": "UnixNs"}, "1732492800123456789", time.Unix(1732492800, 123456789)},
		{map[string]any{"format": "2006-01-02 15:04:05", "location": "Asia/Shanghai"}, "2024-11-25 08:00:00", time.Date(2024, 11, 25, 8, 0, 0, 0, sh)},
		{map[string]any{"format": "2006-01-02 15:04:05"}, "2024-11-25 00:00:00.5", time.Unix(1732492800, 500000000)},
		{map[string]any{"format": "UnixMs", "fallback_formats": []any{"RFC3339"}}, "2024-11-25T00:00:00Z", time.Unix(1732492800, 0)},
		{map[string]any{"format": "Jan _2 15:04:05"}, "Nov 25 00:00:00", time.Date(2030, 11, 25, 0, 0, 0, 0, time.UTC)},
		{map[string]any{"format": "RFC3339", "action_on_failure": "skip"}, "garbage", t0},
	}
	for _, c := range cases {
		spec := map[string]any{"type": "timestamp", "source": "ts"}
		maps.Copy(spec, c.spec)
		p := mustStages(t, spec)[0].(*timestampStage)
		p.now = func() time.Time { return t0 }
		r := rec("x")
		r.Fields["ts"] = c.val
		p.Process(r)
		if !r.Time.Equal(c.want) {
			t.Errorf("%v %q: %v, want %v", c.spec, c.val, r.Time, c.want)
		}
	}
	// fudge: the last time read plus 1ns per failure; before any, the source's.
	p := mustBuild(t, map[string]any{"type": "timestamp", "source": "ts", "format": "Unix"})
	run := func(ts string) time.Time {
		r := rec("x")
		if ts != "" {
			r.Fields["ts"] = ts
		}
		p.Process(r)
		return r.Time
	}
	if got := run("bad"); !got.Equal(t0) {
		t.Errorf("fudge before any time: %v", got)
	}
	run("100")
	if got := run(""); !got.Equal(time.Unix(100, 1)) {
		t.Errorf("fudge missing field: %v", got)
	}
	if got := run("bad"); !got.Equal(time.Unix(100, 2)) {
		t.Errorf("fudge again: %v", got)
	}
}

// TestLabels pins the labels stage: from fields, bounded length and
// distinct values, empty values skipped, invalid UTF-8 repaired.
func TestLabels(t *testing.T) {
	p := mustBuild(t,
		map[string]any{"type": "logfmt"},
		map[string]any{"type": "labels", "level": "", "user": "u", "k": nil, "max_value_length": 5, "max_values": 3})
	r, _, _ := process(p, `level=info u=abcdefgh k=`)
	if want := map[string]string{"level": "info", "user": "abcde"}; !maps.Equal(r.Labels, want) {
		t.Errorf("labels = %v", r.Labels)
	}
	r, _, _ = process(p, "u=\"ab\\xffé\"")
	if r.Labels["user"] != "ab\uFFFD" { // é would cross the 5-byte cut
		t.Errorf("utf8: %q", r.Labels["user"])
	}
	seen := map[string]bool{}
	for i := range 10 {
		r, _, _ := process(p, "level=l"+strconv.Itoa(i))
		seen[r.Labels["level"]] = true
	}
	// info, l0, l1 were the first 3 distinct values; later ones are "other".
	if !seen["l0"] || !seen["l1"] || seen["l2"] || !seen[LabelOther] || len(seen) != 3 {
		t.Errorf("bounded values: %v", seen)
	}
	if r, _, _ := process(p, "level=info"); r.Labels["level"] != "info" {
		t.Errorf("a known value stays: %v", r.Labels)
	}
}

// TestStructuredMetadata pins the structured_metadata stage.
func TestStructuredMetadata(t *testing.T) {
	p := mustBuild(t,
		map[string]any{"type": "zap"},
		map[string]any{"type": "structured_metadata", "trace_id": "", "caller": "file", "empty": nil})
	r, _, _ := process(p, `{"level":"info","caller":"a.go:1","trace_id":"abc","file":"b.go:2","empty":""}`)
	tr, _ := metadata(r, "trace_id")
	c, _ := metadata(r, "caller")
	_, e := metadata(r, "empty")
	if tr != "abc" || c != "b.go:2" || e || len(r.Metadata) != 2 {
		t.Errorf("metadata = %v", r.Metadata)
	}
}

// TestLineFormat pins the line_format stage: fields, labels, .Entry,
// functions, missing names, failures keep the line.
func TestLineFormat(t *testing.T) {
	p := mustBuild(t,
		map[string]any{"type": "zap"},
		map[string]any{"type": "line_format", "template": `{{ .log_level | ToUpper }} {{ .msg }} [{{ .caller }}] {{ Replace .path "/" "_" -1 }} {{ Trim .pad " " }}|{{ .missing }}|{{ default "d" .missing }} {{ regexReplaceAll "(\\d+)" .msg "<$1>" }} {{ ToLower .Entry | len }}`})
	line := `{"level":"warn","msg":"took 42ms","caller":"a.go:1","path":"/a/b","pad":"  x  "}`
	r, _, _ := process(p, line)
	want := "WARN took 42ms [a.go:1] _a_b x||d took <42>ms " + strconv.Itoa(len(line))
	if r.Line != want {
		t.Errorf("line = %q\nwant   %q", r.Line, want)
	}
	p = mustBuild(t, map[string]any{"type": "line_format", "template": `{{ regexReplaceAll "(" .Entry "" }}`})
	if r, keep, _ := process(p, "keep me"); !keep || r.Line != "keep me" {
		t.Errorf("failed template: %v %q", keep, r.Line)
	}
}

// TestLimit pins the limit stage: burst, then rate, per pipeline instance,
// with reason rate_limited.
func TestLimit(t *testing.T) {
	build := func() (*limitStage, *time.Time) {
		p := mustStages(t, map[string]any{"type": "limit", "rate": 2, "burst": 3})[0].(*limitStage)
		now := t0
		p.now = func() time.Time { return now }
		return p, &now
	}
	p, now := build()
	var got []bool
	for range 5 {
		_, keep, reason := process(p, "x")
		if !keep && reason != "rate_limited" {
			t.Fatalf("reason %q", reason)
		}
		got = append(got, keep)
	}
	if !slices.Equal(got, []bool{true, true, true, false, false}) {
		t.Errorf("burst: %v", got)
	}
	*now = now.Add(500 * time.Millisecond) // one token at 2/s
	if _, keep, _ := process(p, "x"); !keep {
		t.Error("after 500ms: dropped")
	}
	if _, keep, _ := process(p, "x"); keep {
		t.Error("second after 500ms: kept")
	}
	p2, _ := build() // another stream's pipeline has its own bucket
	if _, keep, _ := process(p2, "x"); !keep {
		t.Error("second pipeline shares the bucket")
	}
	mustBuild(t, map[string]any{"type": "limit", "rate": 0.5, "drop": true}) // burst defaults to 1
}
