package stage

import (
	"math/bits"
	"strings"
)

// A small JSON scanner for the hot path: it walks the members of one object
// without building a map or reflecting, and hands out values as substrings
// of the input. It accepts exactly what encoding/json accepts (RFC 8259,
// any bytes >= 0x20 inside strings, nesting up to 10000 levels), which the
// tests check against json.Valid.

type jsonKind uint8

const (
	jsonInvalid jsonKind = iota
	jsonString
	jsonNumber
	jsonTrue
	jsonFalse
	jsonNull
	jsonObject
	jsonArray
)

// jsonMaxDepth is encoding/json's nesting limit.
const jsonMaxDepth = 10000

// jsonValue is one scanned value. For a string, raw is the text between the
// quotes, still escaped, and esc tells whether it holds any backslash; for
// everything else raw is the value's JSON text.
type jsonValue struct {
	raw  string
	kind jsonKind
	esc  bool
}

// scalar reports whether v is a string, number or boolean.
func (v jsonValue) scalar() bool {
	return v.kind >= jsonString && v.kind <= jsonFalse
}

// text is the value as a Go string: strings unescaped (invalid UTF-8 and
// lone surrogates become U+FFFD, as encoding/json does), other values as
// their JSON text. It allocates only for strings that need a change.
func (v jsonValue) text() string {
	if v.kind == jsonString {
		return jsonUnquote(v.raw, v.esc)
	}
	return v.raw
}

// objectIter walks the members of a JSON object. Usage:
//
//	it := newObjectIter(s)
//	for it.next() { use it.key, it.val }
//	if !it.valid() { ... s was not exactly one JSON object ... }
type objectIter struct {
	s      string
	i      int
	state  uint8 // iterStart, iterMore, iterDone, iterBad
	key    string
	keyEsc bool
	val    jsonValue
}

const (
	iterStart uint8 = iota
	iterMore
	iterDone
	iterBad
)

// newObjectIter starts at s, which must hold the object and nothing else but
// whitespace.
func newObjectIter(s string) objectIter {
	it := objectIter{s: s}
	i := skipWS(s, 0)
	if i >= len(s) || s[i] != '{' {
		it.state = iterBad
		return it
	}
	it.i = i + 1
	return it
}

// next advances to the next member; it returns false at the end of the
// object or at the first syntax error.
func (it *objectIter) next() bool {
	s := it.s
	switch it.state {
	case iterDone, iterBad:
		return false
	case iterStart:
		it.i = skipWS(s, it.i)
		if it.i < len(s) && s[it.i] == '}' {
			return it.finish(it.i + 1)
		}
		it.state = iterMore
	case iterMore:
		i := skipWS(s, it.i)
		if i >= len(s) {
			return it.fail()
		}
		if s[i] == '}' {
			return it.finish(i + 1)
		}
		if s[i] != ',' {
			return it.fail()
		}
		it.i = skipWS(s, i+1)
	}
	i := it.i
	if i >= len(s) || s[i] != '"' {
		return it.fail()
	}
	end, esc := scanString(s, i)
	if end < 0 {
		return it.fail()
	}
	it.key, it.keyEsc = s[i+1:end-1], esc
	i = skipWS(s, end)
	if i >= len(s) || s[i] != ':' {
		return it.fail()
	}
	i = skipWS(s, i+1)
	end, v := scanValue(s, i, 1)
	if end < 0 {
		return it.fail()
	}
	it.val = v
	it.i = end
	return true
}

func (it *objectIter) fail() bool {
	it.state = iterBad
	return false
}

func (it *objectIter) finish(i int) bool {
	if skipWS(it.s, i) != len(it.s) {
		return it.fail()
	}
	it.state = iterDone
	return false
}

// valid reports, after next returned false, whether the whole input was
// one well-formed object.
func (it *objectIter) valid() bool { return it.state == iterDone }

// keyText is the current key unescaped.
func (it *objectIter) keyText() string { return jsonUnquote(it.key, it.keyEsc) }

// isJSONObject reports whether s is exactly one JSON object (surrounding
// whitespace allowed).
func isJSONObject(s string) bool {
	it := newObjectIter(s)
	for it.next() {
	}
	return it.valid()
}

func skipWS(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanValue scans the value starting at s[i] (depth is the nesting level
// of the container holding it) and returns the index just after it, or -1.
func scanValue(s string, i, depth int) (int, jsonValue) {
	if i >= len(s) {
		return -1, jsonValue{}
	}
	switch c := s[i]; {
	case c == '"':
		end, esc := scanString(s, i)
		if end < 0 {
			return -1, jsonValue{}
		}
		return end, jsonValue{raw: s[i+1 : end-1], kind: jsonString, esc: esc}
	case c == '{' || c == '[':
		end := skipContainer(s, i, depth+1)
		if end < 0 {
			return -1, jsonValue{}
		}
		k := jsonObject
		if c == '[' {
			k = jsonArray
		}
		return end, jsonValue{raw: s[i:end], kind: k}
	case c == '-' || (c >= '0' && c <= '9'):
		end := scanNumber(s, i)
		if end < 0 {
			return -1, jsonValue{}
		}
		return end, jsonValue{raw: s[i:end], kind: jsonNumber}
	case c == 't':
		return scanLiteral(s, i, "true", jsonTrue)
	case c == 'f':
		return scanLiteral(s, i, "false", jsonFalse)
	case c == 'n':
		return scanLiteral(s, i, "null", jsonNull)
	}
	return -1, jsonValue{}
}

func scanLiteral(s string, i int, lit string, k jsonKind) (int, jsonValue) {
	if strings.HasPrefix(s[i:], lit) {
		return i + len(lit), jsonValue{raw: lit, kind: k}
	}
	return -1, jsonValue{}
}

// skipContainer skips the object or array at s[i]; depth is its own level.
func skipContainer(s string, i, depth int) int {
	if depth > jsonMaxDepth {
		return -1
	}
	obj := s[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = skipWS(s, i+1)
	if i < len(s) && s[i] == closer {
		return i + 1
	}
	for {
		if obj {
			if i >= len(s) || s[i] != '"' {
				return -1
			}
			end, _ := scanString(s, i)
			if end < 0 {
				return -1
			}
			i = skipWS(s, end)
			if i >= len(s) || s[i] != ':' {
				return -1
			}
			i = skipWS(s, i+1)
		}
		end, _ := scanValue(s, i, depth)
		if end < 0 {
			return -1
		}
		i = skipWS(s, end)
		if i >= len(s) {
			return -1
		}
		switch s[i] {
		case ',':
			i = skipWS(s, i+1)
		case closer:
			return i + 1
		default:
			return -1
		}
	}
}

// strPlain marks the bytes a string can hold as they are: not a quote, a
// backslash or a control character.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString scans the string whose opening quote is s[i]; it returns the
// index after the closing quote (or -1) and whether it holds escapes.
func scanString(s string, i int) (int, bool) {
	esc := false
	i++
	for {
		// Eight bytes at a time while none needs a look: most of a zap
		// line is plain string text, and this was a fifth of the zap stage.
		for i+8 <= len(s) {
			if m := specialBytes(load64(s, i)); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		for i < len(s) && strPlain[s[i]] {
			i++
		}
		if i >= len(s) {
			return -1, esc
		}
		switch s[i] {
		case '"':
			return i + 1, esc
		case '\\':
			esc = true
			i++
			if i >= len(s) {
				return -1, esc
			}
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) || !isHex(s[i+3]) || !isHex(s[i+4]) {
					return -1, esc
				}
				i += 5
			default:
				return -1, esc
			}
		default: // a control character
			return -1, esc
		}
	}
}

// load64 reads s[i:i+8] as a little-endian word (the compiler makes it one
// load).
func load64(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialBytes marks, in the high bit of each byte, the bytes of w that a
// string cannot hold as they are: '"', '\\' and controls (< 0x20). Only
// the lowest mark is exact (a borrow can mark a byte above a true one),
// which is all scanString uses.
func specialBytes(w uint64) uint64 {
	zero := func(x uint64) uint64 { return (x - lsb) & ^x & msb }
	return zero(w^(lsb*'"')) | zero(w^(lsb*'\\')) | ((w - lsb*0x20) & ^w & msb)
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// scanNumber scans a JSON number at s[i] and returns the index after it,
// or -1.
func scanNumber(s string, i int) int {
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = digits(s, i)
	default:
		return -1
	}
	if i < len(s) && s[i] == '.' {
		j := digits(s, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(s, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
