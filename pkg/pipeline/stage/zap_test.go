package stage

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

const benchZapLine = `{"level":"info","ts":1732492800.123456,"caller":"server/handler.go:142","msg":"request served","method":"GET","path":"/api/v1/orders","status":200,"duration":0.003217,"request_id":"9f1c2b7e-4d3a-4e8b-a1f0-6c2d9e8b7a51"}`

// TestZapJSON pins what the zap stage takes from a production JSON line:
// level label, exact time, caller metadata, scalar fields; the line stays.
func TestZapJSON(t *testing.T) {
	p := mustBuild(t, ZapPreset()...)
	r, keep, _ := process(p, benchZapLine)
	if !keep {
		t.Fatal("dropped")
	}
	if r.Line != benchZapLine {
		t.Errorf("line changed: %q", r.Line)
	}
	if got := r.Labels[pipeline.LabelLogLevel]; got != "info" {
		t.Errorf("log_level = %q", got)
	}
	if want := time.Unix(1732492800, 123456000); !r.Time.Equal(want) {
		t.Errorf("time = %v, want %v", r.Time, want)
	}
	if c, _ := metadata(r, "caller"); c != "server/handler.go:142" {
		t.Errorf("caller = %q", c)
	}
	if len(r.Metadata) != 1 {
		t.Errorf("metadata = %v, want caller only", r.Metadata)
	}
	for k, v := range map[string]string{"msg": "request served", "status": "200", "duration": "0.003217", "level": "info",
		"ts": "1732492800.123456", "request_id": "9f1c2b7e-4d3a-4e8b-a1f0-6c2d9e8b7a51"} {
		if r.Fields[k] != v {
			t.Errorf("Fields[%s] = %q, want %q", k, r.Fields[k], v)
		}
	}
}

// TestZapTime pins time parsing: float seconds exact to the nanosecond
// (never through float64), RFC 3339 / ISO 8601 text, integer epochs by
// magnitude; an unreadable time keeps the source's time.
func TestZapTime(t *testing.T) {
	u := func(s, ns int64) time.Time { return time.Unix(s, ns) }
	cases := []struct {
		ts   string
		want time.Time
	}{
		{`1732492800.123456789`, u(1732492800, 123456789)},
		{`1732492800.1`, u(1732492800, 100000000)},
		{`1732492800.123456`, u(1732492800, 123456000)},
		{`1732492800.9999999999`, u(1732492800, 999999999)}, // beyond ns: truncated
		{`1732492800`, u(1732492800, 0)},
		{`1732492800123`, u(1732492800, 123000000)},       // millis
		{`1732492800123456`, u(1732492800, 123456000)},    // micros
		{`1732492800123456789`, u(1732492800, 123456789)}, // nanos
		{`1.7324928001234567e9`, u(1732492800, 123456700)},
		{`1732492800.5e0`, u(1732492800, 500000000)},
		{`0.5`, u(0, 500000000)},
		{`0`, u(0, 0)},
		{`-1.5`, u(-2, 500000000)},
		{`"1732492800.25"`, u(1732492800, 250000000)},
		{`"2024-11-25T00:00:00.123456789Z"`, u(1732492800, 123456789)},
		{`"2024-11-25T08:00:00+08:00"`, u(1732492800, 0)},
		{`"2024-11-25T00:00:00.123Z"`, u(1732492800, 123000000)},
		{`"2024-11-25T08:00:00.000+0800"`, u(1732492800, 0)}, // zap ISO8601TimeEncoder
		{`"2024-11-25T08:00:00+08"`, u(1732492800, 0)},
		{`"2024-11-25 00:00:00.5"`, u(1732492800, 500000000)}, // no zone: UTC
		{`"2024-11-25t00:00:00z"`, u(1732492800, 0)},
		// Unreadable: the source's time stays.
		{`"yesterday"`, t0},
		{`"2024-13-45T00:00:00Z"`, t0},
		{`99999999999999999999999`, t0}, // beyond 2262
		{`true`, t0},
		{`{"s":1}`, t0},
		{`""`, t0},
	}
	for _, c := range cases {
		// skip: a fresh stage per case (no fudging from an earlier case)
		p := mustBuild(t, map[string]any{"type": "zap", "action_on_failure": "skip"})
		r, _, _ := process(p, `{"level":"info","ts":`+c.ts+`,"msg":"x"}`)
		if !r.Time.Equal(c.want) {
			t.Errorf("ts %s: time = %v (%d), want %v (%d)", c.ts, r.Time, r.Time.UnixNano(), c.want, c.want.UnixNano())
		}
	}
}

// TestZapLevel pins level normalisation: zap's levels in any case, else
// "unknown", also when the level is missing.
func TestZapLevel(t *testing.T) {
	p := mustBuild(t, ZapPreset()...)
	for in, want := range map[string]string{
		`"info"`: "info", `"INFO"`: "info", `"Warn"`: "warn", `"error"`: "error", `"dpanic"`: "dpanic",
		`"DPANIC"`: "dpanic", `"panic"`: "panic", `"fatal"`: "fatal", `"debug"`: "debug",
		`"warning"`: "unknown", `"trace"`: "unknown", `"\u0069nfo"`: "info", `3`: "unknown", `null`: "unknown", `""`: "unknown",
	} {
		r, _, _ := process(p, `{"level":`+in+`,"msg":"m"}`)
		if got := r.Labels[pipeline.LabelLogLevel]; got != want {
			t.Errorf("level %s: log_level = %q, want %q", in, got, want)
		}
	}
	r, _, _ := process(p, `{"msg":"no level"}`)
	if got := r.Labels[pipeline.LabelLogLevel]; got != "unknown" {
		t.Errorf("missing level: log_level = %q, want unknown", got)
	}
}

// TestZapNotJSON pins that lines which are not one JSON object pass
// unchanged, without labels, fields or metadata.
func TestZapNotJSON(t *testing.T) {
	p := mustBuild(t, map[string]any{"type": "zap", "action_on_failure": "skip"})
	for _, line := range []string{
		``, `plain text`, `{`, `{"level":"info"`, `{"level":"info",}`, `{"level":"info"} trailing`,
		`{"level":"info"}{"level":"error"}`, `[{"level":"info"}]`, `{"level":'info'}`, `{"level":"in` + "\x01" + `fo"}`,
		`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a" 1}`, `{1:2}`,
		"{\"level\":\"info\"}\x00", "\x00{}", `{"level":"info"` + strings.Repeat(" ", 10) + `,`,
		"\xff\xfe{\"level\":\"info\"}",
	} {
		r, keep, _ := process(p, line)
		if !keep || r.Line != line || len(r.Labels) != 0 || len(r.Fields) != 0 || len(r.Metadata) != 0 || !r.Time.Equal(t0) {
			t.Errorf("%q: keep=%v line=%q labels=%v fields=%v md=%v time=%v", line, keep, r.Line, r.Labels, r.Fields, r.Metadata, r.Time)
		}
	}
}

// TestZapScanner pins that escapes, nested values and odd bytes are
// handled: unicode escapes (surrogate pairs, lone surrogates), nested
// objects and arrays skipped with their braces inside strings, invalid
// UTF-8 and NUL bytes inside strings.
func TestZapScanner(t *testing.T) {
	p := mustBuild(t, ZapPreset()...)
	line := `{"level":"error","nested":{"level":"debug","a":[1,{"b":"}]"}],"c":"\"{"},"arr":[["x"],{}],` +
		`"msg":"caf\u00e9 \ud83d\ude00 \ud800 tab\tq\"b\\s\/","ts":1732492800.5,"caller":"a\/b.go:1","e":"",` +
		`"k\u0065y":"v","t":true,"f":false,"n":null,"neg":-1.5e-3, "sp" : "x" }`
	r, _, _ := process(p, line)
	if r.Labels[pipeline.LabelLogLevel] != "error" {
		t.Errorf("log_level = %q (a nested level must not count)", r.Labels[pipeline.LabelLogLevel])
	}
	want := map[string]string{
		"level": "error", "msg": "café 😀 \uFFFD tab\tq\"b\\s/", "ts": "1732492800.5", "caller": "a/b.go:1", "e": "",
		"key": "v", "t": "true", "f": "false", "neg": "-1.5e-3", "sp": "x",
	}
	for k, v := range want {
		if r.Fields[k] != v {
			t.Errorf("Fields[%s] = %q, want %q", k, r.Fields[k], v)
		}
	}
	for _, k := range []string{"nested", "arr", "n", "a", "b"} {
		if _, ok := r.Fields[k]; ok {
			t.Errorf("Fields[%s] set; objects, arrays and nulls are skipped", k)
		}
	}
	if c, _ := metadata(r, "caller"); c != "a/b.go:1" {
		t.Errorf("caller = %q", c)
	}

	// Raw invalid UTF-8 and NUL inside strings: valid JSON for encoding/json
	// too; the line is untouched, fields get U+FFFD.
	bad := "{\"level\":\"warn\",\"msg\":\"a\xffb\",\"z\":\"\\u0000\"}"
	r, _, _ = process(p, bad)
	if r.Line != bad || r.Labels[pipeline.LabelLogLevel] != "warn" || r.Fields["msg"] != "a\uFFFDb" || r.Fields["z"] != "\x00" {
		t.Errorf("bad bytes: line=%q labels=%v fields=%q", r.Line, r.Labels, r.Fields)
	}
}

// TestZapDeepNesting pins that nesting is bounded like encoding/json's
// (10000) without blowing the stack.
func TestZapDeepNesting(t *testing.T) {
	p := mustBuild(t, ZapPreset()...)
	for _, depth := range []int{9999, 10001, 100000} {
		line := `{"level":"info","a":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
		r, _, _ := process(p, line)
		ok := depth < 10000 // the object itself is one level
		if got := r.Labels[pipeline.LabelLogLevel] == "info"; got != ok {
			t.Errorf("depth %d: parsed = %v, want %v", depth, got, ok)
		}
	}
}

// TestZapLargeLine pins that a 1 MB line is parsed whole.
func TestZapLargeLine(t *testing.T) {
	p := mustBuild(t, ZapPreset()...)
	big := strings.Repeat("x\\n", 1<<20/3)
	line := `{"level":"error","ts":1732492800,"msg":"big","stacktrace":"` + big + `"}`
	r, _, _ := process(p, line)
	if r.Labels[pipeline.LabelLogLevel] != "error" || len(r.Fields["stacktrace"]) != 2*len(big)/3 || r.Line != line {
		t.Errorf("1 MB line: labels=%v stacktrace len %d", r.Labels, len(r.Fields["stacktrace"]))
	}
	if _, ok := metadata(r, "stacktrace"); ok {
		t.Error("stacktrace must not become metadata")
	}
}

// TestZapConsole pins zap's development (console) format: level from the
// second column, time from the first, caller when it looks like one; the
// line stays.
func TestZapConsole(t *testing.T) {
	cases := []struct {
		line, level, caller string
		time                time.Time
	}{
		{"2024-11-25T00:00:00.000Z\tINFO\tpkg/file.go:42\tstarted\t{\"port\": 80}", "info", "pkg/file.go:42", time.Unix(1732492800, 0)},
		{"2024-11-25T08:00:00.250+0800\tWARN\tmylogger\tpkg/file.go:7\tslow", "warn", "pkg/file.go:7", time.Unix(1732492800, 250000000)},
		{"2024-11-25T00:00:00.000Z\t\x1b[31mERROR\x1b[0m\tfailed", "error", "", time.Unix(1732492800, 0)},
		{"not-a-time\tDEBUG\tmain.go:1\tx", "debug", "main.go:1", t0},
		{"INFO\tmain.go:3\tno time column", "info", "main.go:3", t0},
		{"2024-11-25T00:00:00.000Z\tNOTICE\tx", "", "", t0},
		{"a\tb", "", "", t0},
		{"panic: boom", "", "", t0},
	}
	p := mustBuild(t, map[string]any{"type": "zap", "action_on_failure": "skip"})
	for _, c := range cases {
		r, _, _ := process(p, c.line)
		caller, _ := metadata(r, "caller")
		if r.Line != c.line || r.Labels[pipeline.LabelLogLevel] != c.level || caller != c.caller || !r.Time.Equal(c.time) {
			t.Errorf("%q: line=%q level=%q caller=%q time=%v", c.line, r.Line, r.Labels[pipeline.LabelLogLevel], caller, r.Time)
		}
	}
	// json_auto leaves console lines alone.
	r, _, _ := process(mustBuild(t, ContainerPreset()...), cases[0].line)
	if len(r.Labels) != 0 || !r.Time.Equal(t0) {
		t.Errorf("json_auto on console line: labels=%v time=%v", r.Labels, r.Time)
	}
}

// TestZapFudge pins action_on_failure: zap's default fudge gives a line
// without a time the last time read plus 1ns each; skip keeps the source's.
func TestZapFudge(t *testing.T) {
	p := mustBuild(t, ZapPreset()...)
	r, _, _ := process(p, "no time before any")
	if !r.Time.Equal(t0) {
		t.Errorf("before any time: %v, want the source's", r.Time)
	}
	process(p, `{"level":"info","ts":1732492800.5,"msg":"a"}`)
	for i := 1; i <= 2; i++ {
		r, _, _ = process(p, "goroutine 1 [running]:")
		if want := time.Unix(1732492800, 500000000+int64(i)); !r.Time.Equal(want) {
			t.Errorf("fudged line %d: %v, want %v", i, r.Time, want)
		}
	}
	r, _, _ = process(mustBuild(t, ContainerPreset()...), "plain")
	if !r.Time.Equal(t0) {
		t.Errorf("json_auto: %v, want the source's time", r.Time)
	}
}

// TestJSONAuto pins json_auto: JSON objects get what is present, nothing
// else is touched, nothing is dropped.
func TestJSONAuto(t *testing.T) {
	p := mustBuild(t, ContainerPreset()...)
	r, keep, _ := process(p, `{"msg":"no level no ts"}`)
	if !keep || len(r.Labels) != 0 || !r.Time.Equal(t0) || r.Fields["msg"] != "no level no ts" {
		t.Errorf("plain JSON: keep=%v labels=%v time=%v fields=%v", keep, r.Labels, r.Time, r.Fields)
	}
	r, _, _ = process(p, `  {"level":"ERROR","ts":"2024-11-25T00:00:00Z","caller":"x.go:1"}`)
	if r.Labels[pipeline.LabelLogLevel] != "error" || !r.Time.Equal(time.Unix(1732492800, 0)) {
		t.Errorf("zap-like JSON: labels=%v time=%v", r.Labels, r.Time)
	}
	r, _, _ = process(p, `{"level":"notice"}`)
	if r.Labels[pipeline.LabelLogLevel] != "unknown" {
		t.Errorf("unknown level: %v", r.Labels)
	}
	for _, line := range []string{"GET / 200", "{broken", "[1,2]", "\x00\xff"} {
		r, keep, _ := process(p, line)
		if !keep || r.Line != line || len(r.Labels)+len(r.Fields)+len(r.Metadata) != 0 {
			t.Errorf("%q touched: %v %v %v", line, r.Labels, r.Fields, r.Metadata)
		}
	}
}

// TestZapKeys pins the key options (zapcore.EncoderConfig's names).
func TestZapKeys(t *testing.T) {
	p := mustBuild(t, map[string]any{"type": "zap", "level_key": "severity", "time_key": "time", "caller_key": "src", "message_key": "message"})
	r, _, _ := process(p, `{"severity":"warn","time":1732492800,"src":"a.go:1","message":"hi","level":"error"}`)
	c, _ := metadata(r, "caller")
	if r.Labels[pipeline.LabelLogLevel] != "warn" || !r.Time.Equal(time.Unix(1732492800, 0)) || c != "a.go:1" || r.Fields["msg"] != "hi" {
		t.Errorf("labels=%v time=%v caller=%q fields=%v", r.Labels, r.Time, c, r.Fields)
	}
}

// TestZapManyFields pins the path for objects with more members than the
// stack buffer: every field still arrives, and a late syntax error still
// leaves the line without labels.
func TestZapManyFields(t *testing.T) {
	p := mustBuild(t, map[string]any{"type": "zap", "action_on_failure": "skip"})
	var b strings.Builder
	b.WriteString(`{"level":"warn"`)
	for i := range 40 {
		b.WriteString(`,"f` + strconv.Itoa(i) + `":` + strconv.Itoa(i))
	}
	b.WriteString(`,"ts":1732492800,"caller":"c.go:9"}`)
	r, _, _ := process(p, b.String())
	c, _ := metadata(r, "caller")
	if r.Labels[pipeline.LabelLogLevel] != "warn" || r.Fields["f39"] != "39" || len(r.Fields) != 43 || c != "c.go:9" || !r.Time.Equal(time.Unix(1732492800, 0)) {
		t.Errorf("labels=%v fields=%d caller=%q time=%v", r.Labels, len(r.Fields), c, r.Time)
	}
	bad := strings.TrimSuffix(b.String(), "}") + ","
	if r, _, _ := process(p, bad); len(r.Labels)+len(r.Fields)+len(r.Metadata) != 0 {
		t.Errorf("invalid long object: %v %d %v", r.Labels, len(r.Fields), r.Metadata)
	}
}

// TestZapNilMaps pins that Process works on a record without maps.
func TestZapNilMaps(t *testing.T) {
	r := &pipeline.Record{Line: benchZapLine}
	mustBuild(t, ZapPreset()...).Process(r)
	if r.Labels[pipeline.LabelLogLevel] != "info" || r.Fields["msg"] != "request served" {
		t.Errorf("labels=%v fields=%v", r.Labels, r.Fields)
	}
}

// TestZapSkipsFieldsInStream pins what a Stream gains from being told
// nothing reads Fields: the zap stage, when last, fills none (filling and
// clearing them was a tenth of the zap preset's cost) and sets all else;
// followed by a stage, it fills them as before.
func TestZapSkipsFieldsInStream(t *testing.T) {
	r, _, _ := process(asStreamRuns(t, ZapPreset()...), benchZapLine)
	c, _ := metadata(r, "caller")
	if len(r.Fields) != 0 || r.Labels[pipeline.LabelLogLevel] != "info" || c != "server/handler.go:142" || !r.Time.Equal(time.Unix(1732492800, 123456000)) {
		t.Errorf("zap last in a Stream: fields=%v labels=%v caller=%q time=%v", r.Fields, r.Labels, c, r.Time)
	}
	r, _, _ = process(asStreamRuns(t, map[string]any{"type": "zap"}, map[string]any{"type": "drop", "source": "nope"}), benchZapLine)
	if r.Fields["msg"] != "request served" {
		t.Errorf("zap before another stage in a Stream: fields=%v", r.Fields)
	}
}

var allowedLevels = append(slices.Clone(zapLevels[:]), LevelUnknown)

// FuzzZap: never panics, the line never changes, and log_level, when set,
// is one of zap's levels or "unknown". The scanner agrees with
// encoding/json on which inputs are JSON objects.
func FuzzZap(f *testing.F) {
	for _, s := range []string{benchZapLine, `{"level":"INFO","ts":"2024-11-25T00:00:00Z"}`, "2024-11-25T00:00:00.000Z\tINFO\tx.go:1\tm",
		`{"a":[{"b":"\ud83d\ude00"}],"level":"x"}`, `{"ts":1e400}`, `{"ts":-0.0000000001}`, "{\"a\":\"\xff\"}", `{}`, `{"a":"\u"}`} {
		f.Add(s)
	}
	p := mustBuild(f, ZapPreset()...)
	// As a Stream runs it (nothing reads Fields: zapStage.scan, not
	// objectIter): it must set exactly what the other path sets.
	fast := asStreamRuns(f, ZapPreset()...)
	f.Fuzz(func(t *testing.T, line string) {
		r := rec(line)
		keep, _ := p.Process(r)
		if !keep || r.Line != line {
			t.Fatalf("dropped or changed: %q", r.Line)
		}
		if lv, ok := r.Labels[pipeline.LabelLogLevel]; ok && !slices.Contains(allowedLevels, lv) {
			t.Fatalf("log_level %q", lv)
		}
		checkScannerAgainstStdlib(t, line)
		rf := rec(line)
		fast.Process(rf)
		if !maps.Equal(r.Labels, rf.Labels) || !r.Time.Equal(rf.Time) || !slices.Equal(r.Metadata, rf.Metadata) {
			t.Fatalf("%q: with fields %v %v %v; without %v %v %v", line, r.Labels, r.Time, r.Metadata, rf.Labels, rf.Time, rf.Metadata)
		}
	})
}

// BenchmarkZap is the zap preset as a Stream runs it: nothing reads Fields.
func BenchmarkZap(b *testing.B) {
	benchZap(b, asStreamRuns(b, ZapPreset()...))
}

// BenchmarkZapFields is the zap stage followed by stages that read Fields.
func BenchmarkZapFields(b *testing.B) {
	benchZap(b, mustBuild(b, ZapPreset()...))
}

func benchZap(b *testing.B, p *pipeline.Pipeline) {
	r := rec(benchZapLine)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchZapLine)))
	for b.Loop() {
		// As Stream does: reuse the maps, reset the metadata.
		clear(r.Fields)
		clear(r.Labels)
		r.Line, r.Metadata = benchZapLine, nil
		p.Process(r)
	}
}

// BenchmarkZapConsole is the development format.
func BenchmarkZapConsole(b *testing.B) {
	line := "2024-11-25T00:00:00.000Z\tINFO\tserver/handler.go:142\trequest served\t{\"method\": \"GET\", \"status\": 200}"
	p := mustBuild(b, ZapPreset()...)
	r := rec(line)
	b.ReportAllocs()
	for b.Loop() {
		clear(r.Fields)
		clear(r.Labels)
		r.Metadata = nil
		p.Process(r)
	}
}

// TestEpochSecondsMatchesDigits: zap's format has a fast path; it must
// read exactly what the general parser reads, and leave it everything else.
func TestEpochSecondsMatchesDigits(t *testing.T) {
	cases := []string{
		"1732492800.123456", "1732492800", "0", "0.5", "00001.000000001", "1.", ".5", "1e3",
		"9999999999.999999999", "9223372036.854775807", "9223372036.854775808", "1732492800.1234567891",
		"17324928001", "17324928001.5", "-1.5", "+1.5", "1.2.3", "1732492800.12x", "",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := strconv.FormatUint(rng.Uint64N(1e11), 10)
		if rng.IntN(4) > 0 {
			n += "." + fmt.Sprintf("%012d", rng.Uint64N(1e12))[:1+rng.IntN(11)]
		}
		cases = append(cases, n)
	}
	for _, c := range cases {
		want, wok := parseEpochDigits(c, unitAuto)
		got, ok := epochSeconds(c)
		if ok && (!wok || !got.Equal(want)) {
			t.Fatalf("%q: fast path %v, general %v (%v)", c, got, want, wok)
		}
		if g, gok := parseEpoch(c, unitAuto); gok != wok || !g.Equal(want) {
			t.Fatalf("%q: parseEpoch %v %v, general %v %v", c, g, gok, want, wok)
		}
	}
	if _, ok := epochSeconds("1732492800.123456"); !ok {
		t.Fatal("zap's own format missed the fast path")
	}
}

// An entry the multiline stage joined (a zap error line, then a Go panic's
// trace) is read by its first line: level, time and caller as for the line
// alone, in JSON and console format, whether Fields are read or not; the
// entry is shipped whole. (It was taken for not JSON: errors with a trace
// lost their log_level and time.)
func TestZapJoinedEntry(t *testing.T) {
	const trace = "\npanic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:9 +0x1d"
	jsonLine := `{"level":"error","ts":1732492800.5,"caller":"app/main.go:8","msg":"giving up","n":{"a":1}}`
	consoleLine := "2024-11-25T00:00:00.500Z\tERROR\tapp/main.go:8\tgiving up\t{\"n\": 1}"
	for _, line := range []string{jsonLine, consoleLine} {
		for _, fields := range []bool{false, true} {
			p := mustBuild(t, ZapPreset()...)
			if !fields {
				p = asStreamRuns(t, ZapPreset()...)
			}
			r, keep, _ := process(p, line+trace)
			if !keep || r.Line != line+trace {
				t.Fatalf("%.20q: kept %v, line %q", line, keep, r.Line)
			}
			if r.Labels[pipeline.LabelLogLevel] != "error" || !r.Time.Equal(time.Unix(1732492800, 500000000)) {
				t.Errorf("%.20q fields=%v: level %q, time %v", line, fields, r.Labels[pipeline.LabelLogLevel], r.Time)
			}
			if c, _ := metadata(r, "caller"); c != "app/main.go:8" {
				t.Errorf("%.20q fields=%v: caller %q", line, fields, c)
			}
		}
	}
}
