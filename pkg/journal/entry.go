package journal

import (
	"bytes"
	"iter"
	"time"
)

// Entry is one journal entry. Field values alias the Reader's mapping of
// the file, or its buffer for decompressed values: they stay valid until the
// next call of Next and must be copied to be kept longer.
type Entry struct {
	Cursor
	fields []field
	buf    []byte // decompressed payloads of this entry
}

// field is one name=value of an entry. A decompressed one is first
// recorded as a range of buf (which may move while it grows) and pointed to
// once the entry is complete.
type field struct {
	name, value []byte
	at, eq, end int // range in buf and position of '='; at < 0 if not in buf
}

// Field returns the value of the first field called name.
func (e *Entry) Field(name string) ([]byte, bool) {
	for i := range e.fields {
		if string(e.fields[i].name) == name {
			return e.fields[i].value, true
		}
	}
	return nil, false
}

// Time is the entry's realtime timestamp (when journald received it).
func (e *Entry) Time() time.Time { return time.UnixMicro(int64(e.Realtime)) }

// Len is the number of fields held (those asked for by Options.Fields, if set).
func (e *Entry) Len() int { return len(e.fields) }

// All yields each field name and value in the order the entry stores them;
// a name may come more than once.
func (e *Entry) All() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for i := range e.fields {
			if !yield(e.fields[i].name, e.fields[i].value) {
				return
			}
		}
	}
}

func (e *Entry) reset() {
	e.fields = e.fields[:0]
	e.buf = e.buf[:0]
}

func (e *Entry) addMapped(p []byte, eq int) {
	e.fields = append(e.fields, field{name: p[:eq], value: p[eq+1:], at: -1})
}

func (e *Entry) addBuffered(at, eq int) {
	e.fields = append(e.fields, field{at: at, eq: eq, end: len(e.buf)})
}

// resolve points decompressed fields into buf, now that it no longer grows.
func (e *Entry) resolve() {
	for i := range e.fields {
		if f := &e.fields[i]; f.at >= 0 {
			f.name = e.buf[f.at:f.eq:f.eq]
			f.value = e.buf[f.eq+1 : f.end : f.end]
		}
	}
}

// fieldEq says where the '=' of payload p is, if it is a field wanted.
// With no wanted list every well-formed field is.
func fieldEq(p []byte, wanted []string) (int, bool) {
	if wanted == nil {
		eq := bytes.IndexByte(p, '=')
		return eq, eq > 0
	}
	for _, w := range wanted {
		if len(p) > len(w) && p[len(w)] == '=' && string(p[:len(w)]) == w {
			return len(w), true
		}
	}
	return 0, false
}
