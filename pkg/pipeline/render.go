package pipeline

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"github.com/podtail/podtail/pkg/labels"
)

// How a Stream names the Loki stream of a line: the label set rendered in
// Loki's push format (source labels over stage labels, reserved labels from
// the source only, values bounded), cached per set of labels the stages
// added. The Stream type is in stream.go.

// LabelLogLevel is the label the zap and json_auto stages set.
const LabelLogLevel = "log_level"

// reservedLabels come only from trusted metadata (the source), never from
// a line.
var reservedLabels = map[string]bool{labels.Tenant: true, labels.Application: true, labels.Version: true, labels.Stream: true}

// ReservedLabel reports whether name is one of the labels that come only
// from trusted metadata (the source): tenant, application, version,
// stream. A Stream discards a stage's value for one; the labels stage
// refuses to set one.
func ReservedLabel(name string) bool { return reservedLabels[name] }

// render returns the Loki stream of a line, cached by the added labels.
// Reserved labels (tenant, application, version, stream) come from the
// source only: from its labels, or from the pairs it passed to Send (src); a
// stage's value for one of them is discarded. Values are bounded by
// limits.max_label_value_bytes (Loki's 2048 without Limits).
func (s *Stream) render(added map[string]string, src []string) *lokiStream {
	var key [2]string
	if len(added) == 1 && len(src) == 0 {
		// log_level, usually: a lookup, cheaper than starting a map walk.
		if v, ok := added[LabelLogLevel]; ok {
			key = [2]string{LabelLogLevel, v}
		} else {
			for k, v := range added {
				key = [2]string{k, v}
			}
		}
	}
	if key[0] == "" {
		// The signature is built in a buffer the stream keeps, and looked
		// up without a string of its own: a string per line was a quarter
		// of what container output allocated. (No label is named "".)
		s.sig = appendSignature(s.sig[:0], added)
		key = [2]string{"", unsafe.String(unsafe.SliceData(s.sig), len(s.sig))}
	}
	if ls, ok := s.cache.get(key); ok {
		return ls
	}
	ls := s.renderNew(added, src)
	if s.cache.len() < 1024 { // added labels are bounded; this is a backstop
		// The key outlives the line it may point into (StreamConfig.BorrowedLines), and
		// the signature buffer.
		s.cache.put([2]string{strings.Clone(key[0]), strings.Clone(key[1])}, ls)
	}
	return ls
}

// renderNew renders a label set render has not cached.
func (s *Stream) renderNew(added map[string]string, src []string) *lokiStream {
	all, cut, _ := labels.Sanitize(s.mergeLabels(added, src), s.limits.maxLabelValue())
	if cut > 0 {
		s.limits.countLabelsCut(s.tenant)
	}
	rendered := RenderLabels(all)
	s.mu.Lock()
	ls := s.stream(streamKey(rendered))
	s.mu.Unlock()
	ls.rendered = rendered
	return ls
}

// mergeLabels is a line's label set before Loki's rules (labels.Sanitize):
// the stages' added labels but reserved ones, under the pairs the source
// passed to Send (src), under the source's own.
func (s *Stream) mergeLabels(added map[string]string, src []string) map[string]string {
	all := make(map[string]string, len(s.base)/2+len(added))
	for k, v := range added {
		if !reservedLabels[k] {
			all[k] = v
		}
	}
	for i := 0; i+1 < len(src); i += 2 {
		all[src[i]] = src[i+1]
	}
	for i := 0; i+1 < len(s.base); i += 2 { // source labels win over stage labels
		all[s.base[i]] = s.base[i+1]
	}
	return all
}

// appendSignature appends to b a key naming the label set m: its names
// and values in name order, each after its length, so that no two sets
// have the same key whatever bytes their values hold.
func appendSignature(b []byte, m map[string]string) []byte {
	var small [8]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// streamKey is a short stable name for a rendered label set, used as the key
// of the per-stream last times kept in positions.
func streamKey(labels string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(labels))
	return strconv.FormatUint(h.Sum64(), 36)
}

// RenderLabels writes a label set in Loki's push format with names sorted:
// {a="x", b="y"}. The string is as long as it needs to be: a stream keeps
// it as long as its file is read, and a strings.Builder's doubling left a
// quarter of it spare.
func RenderLabels(ls map[string]string) string {
	names := make([]string, 0, len(ls))
	n := 2
	for k, v := range ls {
		names = append(names, k)
		n += len(k) + len(v) + 5 // `, ` `=` and the quotes
	}
	sort.Strings(names)
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, k...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, ls[k])
	}
	b = append(b, '}')
	return string(b)
}

// labelsStream is labels.Stream, for code where a parameter named labels
// hides the package.
const labelsStream = labels.Stream
