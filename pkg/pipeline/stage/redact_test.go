package stage

import (
	"testing"
)

// TestRedactPatterns pins each built-in pattern: what it masks, and the
// ordinary text it leaves alone.
func TestRedactPatterns(t *testing.T) {
	cases := []struct {
		patterns []any
		in, want string
	}{
		// password: key=value, key: value, JSON, escaped JSON, URL.
		{[]any{"password"}, "login password=hunter2 user=bob", "login password=**** user=bob"},
		{[]any{"password"}, `db_password="s3cr et" pwd='x' passwd=a&b=1`, `db_password="****" pwd='****' passwd=****&b=1`},
		{[]any{"password"}, `{"user":"bob","password":"hunter2","apiKey":"k1","token":12345,"secret":null,"ok":"password"}`,
			`{"user":"bob","password":"****","apiKey":"****","token":"****","secret":null,"ok":"password"}`},
		{[]any{"password"}, `{"msg":"{\"password\":\"hunter2\",\"a\":1}"}`, `{"msg":"{\"password\":\"****\",\"a\":1}"}`},
		{[]any{"password"}, "X-Api-Key: abc123 client_secret=zz access_token=t.t refresh-token:q SECRET_KEY=k", "X-Api-Key: **** client_secret=**** access_token=**** refresh-token:**** SECRET_KEY=****"},
		{[]any{"password"}, "dsn=postgres://app:s3cret@db:5432/x", "dsn=postgres://app:****@db:5432/x"},
		{[]any{"password"}, "connect mysql://root:pw@tcp(h)/d ok", "connect mysql://root:****@tcp(h)/d ok"},
		{[]any{"password"}, "passwordless login enabled; 3 tokens left; secretary=ann; token_count=3; password reset sent", ""},
		{[]any{"password"}, `password="" next`, ""},
		// bearer
		{[]any{"bearer"}, "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "Authorization: Bearer ****"},
		{[]any{"bearer"}, `"authorization":"bearer abcd1234efgh"`, `"authorization":"bearer ****"`},
		{[]any{"bearer"}, "Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ****"},
		{[]any{"bearer"}, "the API uses a bearer token; Bearer authentication; basic auth disabled", ""},
		// email
		{[]any{"email"}, "sent to ann.lee+x@mail.example.co.uk, cc bob@example.com.", "sent to ****, cc ****."},
		{[]any{"email"}, "module golang.org/x/net@v0.59.0 at user@localhost; @mention", ""},
		// credit card
		{[]any{"credit_card"}, "card 4111 1111 1111 1111 exp 12/30", "card **** exp 12/30"},
		{[]any{"credit_card"}, "card=5500-0000-0000-0004, amex 378282246310005", "card=****, amex ****"},
		{[]any{"credit_card"}, `{"ts":1732492800123456789,"id":4111111111111112,"n":1234567890123,"f":0.4111111111111111}`, ""},
		// ipv4
		{[]any{"ipv4"}, "from 10.0.0.1:8080 and 192.168.1.255", "from ****:8080 and ****"},
		{[]any{"ipv4"}, "version 1.2.3.4.5, 999.1.1.1, 10.0.0", ""},
	}
	for _, c := range cases {
		p := mustBuild(t, map[string]any{"type": "redact", "patterns": c.patterns})
		want := c.want
		if want == "" {
			want = c.in
		}
		if r, _, _ := process(p, c.in); r.Line != want {
			t.Errorf("%v %q\n got  %q\n want %q", c.patterns, c.in, r.Line, want)
		}
	}
}

// TestRedactDefaults pins the default patterns (all but ipv4), custom
// expressions (groups or whole match), replacement, and fields/metadata.
func TestRedactDefaults(t *testing.T) {
	p := mustBuild(t, map[string]any{"type": "zap"}, map[string]any{"type": "redact"})
	line := `{"level":"info","caller":"a.go:1","msg":"user ann@x.io paid with 4111-1111-1111-1111 from 10.1.2.3","password":"p","auth":"Bearer abc.def.ghi"}`
	r, _, _ := process(p, line)
	want := `{"level":"info","caller":"a.go:1","msg":"user **** paid with **** from 10.1.2.3","password":"****","auth":"Bearer ****"}`
	if r.Line != want {
		t.Errorf("line\n got  %q\n want %q", r.Line, want)
	}
	if r.Fields["password"] != "****" || r.Fields["msg"] != "user **** paid with **** from 10.1.2.3" || r.Fields["auth"] != "Bearer ****" {
		t.Errorf("fields %q", r.Fields)
	}

	p = mustBuild(t,
		map[string]any{"type": "logfmt"},
		map[string]any{"type": "structured_metadata", "values": map[string]any{"phone": ""}},
		map[string]any{"type": "redact", "patterns": []any{}, "replacement": "[x]",
			"expressions": []any{`\b1[3-9]\d(\d{4})(\d{4})\b`, `sid=\w+`}})
	r, _, _ = process(p, "phone=13812345678 sid=abc")
	if r.Line != "phone=138[x][x] [x]" {
		t.Errorf("custom: %q", r.Line)
	}
	if v, _ := metadata(r, "phone"); v != "138[x][x]" {
		t.Errorf("metadata: %q", v)
	}
	if r.Fields["phone"] != "138[x][x]" || r.Fields["sid"] != "abc" {
		t.Errorf("fields: %q", r.Fields)
	}
	// Ordinary text is returned as is (no copy).
	p = mustBuild(t, map[string]any{"type": "redact", "patterns": []any{"password", "bearer", "email", "credit_card", "ipv4"}})
	for _, s := range []string{"", "GET /api/v1/orders 200 3ms", "passwordless login", "\xff\x00"} {
		if r, _, _ := process(p, s); r.Line != s {
			t.Errorf("%q -> %q", s, r.Line)
		}
	}
}

func BenchmarkRedactDefault(b *testing.B) {
	p := mustBuild(b, map[string]any{"type": "redact"})
	r := rec(benchZapLine)
	b.ReportAllocs()
	for b.Loop() {
		r.Line = benchZapLine
		p.Process(r)
	}
}
