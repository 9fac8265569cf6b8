package stage

import (
	"encoding/json"
	"strings"
	"testing"
)

// checkScannerAgainstStdlib fails t when the hand-written scanner and
// encoding/json disagree about s: whether it is one JSON object, and the
// unescaped value of each top-level string member.
func checkScannerAgainstStdlib(t *testing.T, s string) {
	t.Helper()
	std := json.Valid([]byte(s)) && strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{")
	if got := isJSONObject(s); got != std {
		t.Fatalf("isJSONObject(%q) = %v, encoding/json says %v", s, got, std)
	}
	if !std {
		return
	}
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("Unmarshal(%q): %v", s, err)
	}
	seen := map[string]jsonValue{}
	it := newObjectIter(s)
	for it.next() {
		seen[it.keyText()] = it.val // the last duplicate wins, as in encoding/json
	}
	if len(seen) != len(m) {
		t.Fatalf("%q: %d keys, encoding/json has %d", s, len(seen), len(m))
	}
	for k, v := range seen {
		sv, isStr := m[k].(string)
		if isStr != (v.kind == jsonString) {
			t.Fatalf("%q: key %q kind %d, encoding/json has %T", s, k, v.kind, m[k])
		}
		if isStr && v.text() != sv {
			t.Fatalf("%q: key %q = %q, encoding/json has %q", s, k, v.text(), sv)
		}
	}
}

// TestScannerMatchesStdlib pins agreement with encoding/json on tricky
// inputs (the unescaping is hand-written; encoding/json is the reference).
func TestScannerMatchesStdlib(t *testing.T) {
	for _, s := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a":-0.0e+1}`, `{"a":01}`, `{"a":1.}`, `{"a":.1}`, `{"a":1e}`, `{"a":1E5}`,
		`{"a":"\u00e9\ud83d\ude00\ud800\udc00\ud800x\udc00\ud800\ud800\ude00"}`, `{"a":"\u0000\b\f\n\r\t\/\\\""}`,
		"{\"a\":\"\xff\xfe\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\t\"}", `{"a":"\ud83d\u0041"}`,
		`{"a":[1,[2,{"b":[]}]],"c":{"d":{}}}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":{"b"}}`, `{"a":{"b":1,}}`,
		`{"a":true,"b":false,"c":null}`, `{"a":nul}`, `{"a":1 "b":2}`, `{"a":1,"a":2}`, `{"\u0061":1,"a":"x"}`,
		"{\"a\":1}\n", "\r\n{\"a\":1}\r\n", `{"a":1}x`, `{"a":"\uD83D"}`, `{"a":"\uDE00\uD83D"}`,
	} {
		checkScannerAgainstStdlib(t, s)
	}
}

// TestJSONLookup pins the path lookup used by the json stage.
func TestJSONLookup(t *testing.T) {
	obj := `{"a":{"b":[10,{"c":"x"}],"b.c":"dot"},"z":null}`
	v := jsonValue{raw: obj, kind: jsonObject}
	for path, want := range map[string]string{
		`a.b[0]`: "10", `a.b[1].c`: "x", `a."b.c"`: "dot", `a.b`: `[10,{"c":"x"}]`,
	} {
		p, err := parsePath(path)
		if err != nil {
			t.Fatalf("parsePath(%q): %v", path, err)
		}
		got, ok := jsonLookup(v, p)
		if !ok || got.text() != want {
			t.Errorf("%s = %q %v, want %q", path, got.text(), ok, want)
		}
	}
	for _, path := range []string{`a.b[2]`, `a.x`, `a.b.c`, `z.y`, `a[0]`} {
		p, _ := parsePath(path)
		if got, ok := jsonLookup(v, p); ok {
			t.Errorf("%s found %q", path, got.raw)
		}
	}
}
