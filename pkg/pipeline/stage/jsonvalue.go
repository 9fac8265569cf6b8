package stage

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// What the scanner's values hold (jsonscan.go scans them): a string's text
// unescaped, and the value at a path of keys and indexes inside one.

// jsonUnquote turns the inside of a scanned JSON string into its value. It
// returns raw itself when there is nothing to change.
func jsonUnquote(raw string, esc bool) string {
	if !esc && utf8.ValidString(raw) {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				b.WriteByte(c)
				i++
				continue
			}
			r, n := utf8.DecodeRuneInString(raw[i:])
			b.WriteRune(r) // RuneError for each invalid byte, as encoding/json
			i += n
			continue
		}
		i++
		if i >= len(raw) { // not produced by scanString
			break
		}
		switch raw[i] {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := hex4(raw, i+1)
			if !ok {
				return b.String()
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(raw, i+3); ok && i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						b.WriteRune(d)
						i += 6
						break
					}
				}
				r = utf8.RuneError
			}
			b.WriteRune(r)
		default: // '"', '\\', '/'
			b.WriteByte(raw[i])
		}
		i++
	}
	return b.String()
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// jsonLookup finds the value at a path of keys (and array indexes) inside
// the JSON value v.
func jsonLookup(v jsonValue, path []pathStep) (jsonValue, bool) {
	for _, st := range path {
		switch {
		case st.index >= 0 && v.kind == jsonArray:
			e, ok := arrayElem(v.raw, st.index)
			if !ok {
				return jsonValue{}, false
			}
			v = e
		case st.index < 0 && v.kind == jsonObject:
			e, ok := objectMember(v.raw, st.key)
			if !ok {
				return jsonValue{}, false
			}
			v = e
		default:
			return jsonValue{}, false
		}
	}
	return v, true
}

// objectMember returns the value of key in the (valid) object text obj;
// the last one wins when a key repeats, as in encoding/json.
func objectMember(obj, key string) (jsonValue, bool) {
	it := newObjectIter(obj)
	var found jsonValue
	ok := false
	for it.next() {
		if (!it.keyEsc && it.key == key) || (it.keyEsc && it.keyText() == key) {
			found, ok = it.val, true
		}
	}
	return found, ok
}

// arrayElem returns element n of the (valid) array text arr.
func arrayElem(arr string, n int) (jsonValue, bool) {
	i := skipWS(arr, 1)
	if i < len(arr) && arr[i] == ']' {
		return jsonValue{}, false
	}
	for k := 0; i < len(arr); k++ {
		end, v := scanValue(arr, i, 1)
		if end < 0 {
			return jsonValue{}, false
		}
		if k == n {
			return v, true
		}
		i = skipWS(arr, end)
		if i >= len(arr) || arr[i] != ',' {
			return jsonValue{}, false
		}
		i = skipWS(arr, i+1)
	}
	return jsonValue{}, false
}
