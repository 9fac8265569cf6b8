package stage

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/podtail/podtail/pkg/pipeline"
)

// redactStage masks secrets (the seed's 日志脱敏) in the line, in Fields
// values and in structured metadata values. Labels are not touched (they
// are bounded and come from fields the operator chose).
//
// patterns are built-in maskers; without the option the default is
// [password, bearer, email, credit_card]:
//   - password: the value of a key=value, key: value or JSON "key": value
//     (also inside escaped JSON, \"key\":\"value\") whose key ends in
//     password, passwd, pwd, passphrase, secret, secret_key, token,
//     api_key / apikey / api-key, access_key, private_key, client_secret or
//     credential(s), in any case and after any prefix (db_password,
//     X-Api-Key, accessToken); the key stays, the value is masked (a
//     quoted value keeps its quotes; a JSON number or boolean becomes the
//     quoted mask, so JSON stays JSON; null is left). Also the password of
//     a URL (scheme://user:password@host), and the whole value of a field
//     whose name is such a key;
//   - bearer: the token after "Bearer" (when it looks like a token: at
//     least 8 characters with a digit or one of -._~+/=, or 20 of any),
//     and the credentials after "Authorization: Basic";
//   - email: addresses (local@domain.tld);
//   - credit_card: 13 to 19 digits, spaces or dashes between them allowed,
//     with a card issuer's prefix and a valid Luhn check digit;
//   - ipv4: dotted quads (not default: addresses are often wanted).
//
// expressions are extra RE2 regexes: every capture group of a match is
// masked, or the whole match when there are no groups.
//
// replacement is the mask, default "****".
type redactStage struct {
	rules      []*redactRule
	keyRE      *regexp.Regexp // field names whose value is a secret, or nil
	repl       string
	quotedRepl string
}

var _ pipeline.Stage = (*redactStage)(nil)

// redactRule finds spans to mask in a text.
type redactRule struct {
	re *regexp.Regexp
	// pre is a cheap test that must hold for the regex to have a chance.
	pre func(string) bool
	// span picks the span to mask from a match (m as from
	// FindAllStringSubmatchIndex); lo < 0 skips the match. quote asks for
	// the mask in double quotes (a bare JSON value).
	span func(s string, m []int) (lo, hi int, quote bool)
}

// Secret key names for the password pattern.
const secretKeys = `(?:password|passwd|pwd|passphrase|secret|secret[_-]?key|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|client[_-]?secret|credentials?)`

var (
	passwordRE = regexp.MustCompile(`(?i)\b([\w.-]*?` + secretKeys + `)(\\?")?\s*[:=]\s*(\\"[^"]*?\\"|"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&"'}\])]+)`)
	secretKey  = regexp.MustCompile(`(?i)^[\w.-]*?` + secretKeys + `$`)
	urlPassRE  = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@`)
	bearerRE   = regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)`)
	basicRE    = regexp.MustCompile(`(?i)\bauthorization(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?basic\s+([A-Za-z0-9+/]+=*)`)
	emailRE    = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b`)
	cardRE     = regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`)
	ipv4RE     = regexp.MustCompile(`\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b`)
)

// builtinRules are the patterns by name, each a list of rules.
var builtinRules = map[string][]*redactRule{
	"password": {
		{re: passwordRE, pre: hasSecretKey, span: passwordSpan},
		{re: urlPassRE, pre: func(s string) bool { return strings.Contains(s, "://") }, span: groupSpan(1)},
	},
	"bearer": {
		{re: bearerRE, pre: func(s string) bool { return containsFold(s, "bearer") }, span: bearerSpan},
		{re: basicRE, pre: func(s string) bool { return containsFold(s, "basic") }, span: groupSpan(1)},
	},
	"email":       {{re: emailRE, pre: func(s string) bool { return strings.IndexByte(s, '@') >= 0 }, span: groupSpan(0)}},
	"credit_card": {{re: cardRE, pre: hasCardRun, span: cardSpan}},
	"ipv4":        {{re: ipv4RE, pre: func(s string) bool { return strings.Count(s, ".") >= 3 }, span: ipv4Span}},
}

// builtinOrder applies password first, so that a secret holding an email
// is masked whole.
var builtinOrder = []string{"password", "bearer", "email", "credit_card", "ipv4"}

var defaultPatterns = []string{"password", "bearer", "email", "credit_card"}

type redactOptions struct {
	Patterns    *[]string `mapstructure:"patterns"`
	Expressions []string  `mapstructure:"expressions"`
	Replacement *string   `mapstructure:"replacement"`
}

func newRedactStage(spec map[string]any) (*redactStage, error) {
	var o redactOptions
	var errs []error
	if err := decode(spec, &o); err != nil {
		errs = append(errs, err)
	}
	s := &redactStage{repl: "****"}
	if o.Replacement != nil {
		s.repl = *o.Replacement
	}
	s.quotedRepl = `"` + strings.ReplaceAll(s.repl, `"`, `\"`) + `"`
	patterns := defaultPatterns
	if o.Patterns != nil {
		patterns = *o.Patterns
	}
	want := map[string]bool{}
	for i, p := range patterns {
		if _, ok := builtinRules[p]; !ok {
			errs = append(errs, optErrorf(fmt.Sprintf("patterns[%d]", i), "unknown pattern %q (known: %s)", p, strings.Join(builtinOrder, ", ")))
			continue
		}
		want[p] = true
	}
	for _, p := range builtinOrder {
		if want[p] {
			s.rules = append(s.rules, builtinRules[p]...)
		}
	}
	if want["password"] {
		s.keyRE = secretKey
	}
	for i, e := range o.Expressions {
		re, err := regexp.Compile(e)
		if err != nil {
			errs = append(errs, &optErr{key: fmt.Sprintf("expressions[%d]", i), err: err})
			continue
		}
		if re.MatchString("") {
			errs = append(errs, optErrorf(fmt.Sprintf("expressions[%d]", i), "%q matches the empty string", e))
			continue
		}
		s.rules = append(s.rules, &redactRule{re: re})
	}
	if len(s.rules) == 0 && len(errs) == 0 {
		errs = append(errs, optErrorf("patterns", "nothing to redact: no patterns and no expressions"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Process implements Stage.
func (s *redactStage) Process(r *pipeline.Record) (bool, string) {
	r.Line = s.redact(r.Line)
	for k, v := range r.Fields {
		if v == "" {
			continue
		}
		if s.keyRE != nil && v != s.repl && s.keyRE.MatchString(k) {
			r.Fields[k] = s.repl
			continue
		}
		if nv := s.redact(v); nv != v {
			r.Fields[k] = nv
		}
	}
	for i := range r.Metadata {
		r.Metadata[i].Value = s.redact(r.Metadata[i].Value)
	}
	return true, ""
}

// redact applies every rule to text in order; it returns text itself when
// nothing matched.
func (s *redactStage) redact(text string) string {
	for _, rule := range s.rules {
		if rule.pre != nil && !rule.pre(text) {
			continue
		}
		ms := rule.re.FindAllStringSubmatchIndex(text, -1)
		if ms == nil {
			continue
		}
		var spans []redactSpan
		for _, m := range ms {
			if rule.span == nil { // a custom expression
				if len(m) == 2 {
					spans = append(spans, redactSpan{lo: m[0], hi: m[1]})
					continue
				}
				for g := 2; g < len(m); g += 2 {
					if m[g] >= 0 && m[g+1] > m[g] {
						spans = append(spans, redactSpan{lo: m[g], hi: m[g+1]})
					}
				}
				continue
			}
			if lo, hi, q := rule.span(text, m); lo >= 0 && hi > lo {
				spans = append(spans, redactSpan{lo: lo, hi: hi, quote: q})
			}
		}
		text = s.replaceSpans(text, spans)
	}
	return text
}

type redactSpan struct {
	lo, hi int
	quote  bool
}

// replaceSpans masks spans (which may overlap: nested groups) in text.
func (s *redactStage) replaceSpans(text string, spans []redactSpan) string {
	if len(spans) == 0 {
		return text
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	var b strings.Builder
	b.Grow(len(text))
	at := 0
	for _, sp := range spans {
		if sp.lo < at { // inside the previous span
			continue
		}
		b.WriteString(text[at:sp.lo])
		if sp.quote {
			b.WriteString(s.quotedRepl)
		} else {
			b.WriteString(s.repl)
		}
		at = sp.hi
	}
	b.WriteString(text[at:])
	return b.String()
}

func groupSpan(g int) func(string, []int) (int, int, bool) {
	return func(_ string, m []int) (int, int, bool) { return m[2*g], m[2*g+1], false }
}

// passwordSpan masks the value (group 3) of a secret key; quoted values
// keep their quotes, a bare value after a JSON key becomes a string.
func passwordSpan(s string, m []int) (int, int, bool) {
	lo, hi := m[6], m[7]
	v := s[lo:hi]
	switch {
	case strings.HasPrefix(v, `\"`) && len(v) >= 4:
		return lo + 2, hi - 2, false
	case v[0] == '"' || v[0] == '\'':
		return lo + 1, hi - 1, false
	}
	jsonKey := m[4] >= 0 // the key was quoted: "password": 123
	if jsonKey && v == "null" {
		return -1, -1, false
	}
	return lo, hi, jsonKey
}

// bearerSpan masks what looks like a token, so that prose ("uses a
// bearer token") stays.
func bearerSpan(s string, m []int) (int, int, bool) {
	tok := s[m[2]:m[3]]
	if len(tok) >= 20 || (len(tok) >= 8 && strings.ContainsAny(tok, "0123456789-._~+/=")) {
		return m[2], m[3], false
	}
	return -1, -1, false
}

// cardSpan keeps numbers that are not card numbers: wrong length, no
// issuer prefix, failed Luhn check, or part of a decimal number.
func cardSpan(s string, m []int) (int, int, bool) {
	lo, hi := m[0], m[1]
	if (lo > 0 && s[lo-1] == '.') || (hi+1 < len(s) && s[hi] == '.' && isDigit(s[hi+1])) {
		return -1, -1, false
	}
	var d [19]byte
	n := 0
	for i := lo; i < hi; i++ {
		if isDigit(s[i]) {
			if n == len(d) {
				return -1, -1, false
			}
			d[n] = s[i] - '0'
			n++
		}
	}
	if n < 13 || !cardIssuer(d[:n]) || !luhn(d[:n]) {
		return -1, -1, false
	}
	return lo, hi, false
}

// cardIssuer checks the issuer prefixes of the card networks: Visa 4,
// Mastercard 51-55 and 2221-2720, Maestro 50 and 56-69, Amex 34 37, Diners
// 30 36 38 39, JCB 35, Discover 6011 644-649 65, UnionPay 62.
func cardIssuer(d []byte) bool {
	switch d[0] {
	case 4, 5, 6:
		return true
	case 3:
		return d[1] == 0 || d[1] >= 4
	case 2:
		p := int(d[0])*1000 + int(d[1])*100 + int(d[2])*10 + int(d[3])
		return p >= 2221 && p <= 2720
	}
	return false
}

func luhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i])
		if (len(d)-1-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// ipv4Span skips dotted quads that are part of longer dotted numbers
// (versions such as 1.2.3.4.5).
func ipv4Span(s string, m []int) (int, int, bool) {
	lo, hi := m[0], m[1]
	if (lo > 1 && s[lo-1] == '.' && isDigit(s[lo-2])) || (hi+1 < len(s) && s[hi] == '.' && isDigit(s[hi+1])) {
		return -1, -1, false
	}
	return lo, hi, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// hasCardRun is the cheap test for credit_card: 13 digits in a row, with
// at most one space or dash between two digits.
func hasCardRun(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isDigit(c):
			if n++; n >= 13 {
				return true
			}
		case (c == ' ' || c == '-') && n > 0 && i+1 < len(s) && isDigit(s[i+1]):
		default:
			n = 0
		}
	}
	return false
}

// hasSecretKey is the cheap test for the password pattern: one pass
// looking for the start of a secret key word in any case.
func hasSecretKey(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] | 0x20 {
		case 'p':
			if hasFoldAt(s, i, "pass") || hasFoldAt(s, i, "pwd") {
				return true
			}
		case 's':
			if hasFoldAt(s, i, "secret") {
				return true
			}
		case 't':
			if hasFoldAt(s, i, "token") {
				return true
			}
		case 'k':
			if hasFoldAt(s, i, "key") {
				return true
			}
		case 'c':
			if hasFoldAt(s, i, "credential") {
				return true
			}
		}
	}
	return false
}

// containsFold reports whether s contains sub (lower-case ASCII letters)
// in any case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i]|0x20 == sub[0] && hasFoldAt(s, i, sub) {
			return true
		}
	}
	return false
}

// hasFoldAt reports whether s holds sub (lower-case ASCII letters) at i in
// any case.
func hasFoldAt(s string, i int, sub string) bool {
	if i+len(sub) > len(s) {
		return false
	}
	for j := 0; j < len(sub); j++ {
		if s[i+j]|0x20 != sub[j] {
			return false
		}
	}
	return true
}
