package loki

import (
	"regexp"
	"strconv"
	"strings"
)

// Loki answers a push with 400 when it refused some entries, and stores the
// rest of the request anyway. The body lists what it refused, in two shapes
// (Loki v3, pkg/distributor and pkg/ingester):
//
//   - the distributor validates each entry and each stream's labels, and joins
//     the messages with "; ", prefixing "N errors like: " to a message that
//     occurred N times (or when there are several kinds);
//   - an ingester refusing out-of-order or too-old entries lists them, then
//     says "user 'T', total ignored: N out of M for stream: {…}".
//
// refused reads such a body and counts, by reason, the entries of b that Loki
// did not store. Messages it cannot place are counted once each under
// "rejected_400", so the total is never zero for a body that says anything.
func refused(body string, b *batch) (reasons map[string]int, total int) {
	reasons = map[string]int{}
	body = strings.TrimSpace(body)
	if body == "" {
		return reasons, 0
	}
	if m := ingesterIgnored.FindAllStringSubmatch(body, -1); m != nil {
		reason := "out_of_order"
		if strings.Contains(body, "too far behind") {
			reason = "too_old"
		}
		for _, g := range m {
			n, _ := strconv.Atoi(g[1])
			reasons[reason] += n
			total += n
		}
		return reasons, total
	}
	// One message has "; " of its own: "… has N label names; limit M".
	body = strings.ReplaceAll(body, "label names; limit", "label names, limit")
	for _, msg := range strings.Split(body, "; ") {
		n := 1
		if g := grouped.FindStringSubmatch(msg); g != nil {
			n, _ = strconv.Atoi(g[1])
			msg = msg[len(g[0]):]
		}
		reason, perStream := classify(msg)
		if perStream {
			// The whole stream was refused: count its entries, once per
			// stream named, when the message names one of ours.
			if g := streamName.FindStringSubmatch(msg); g != nil {
				if i, ok := b.index[g[1]]; ok {
					n = b.streams[i].n
				}
			}
		}
		reasons[reason] += n
		total += n
	}
	return reasons, total
}

var (
	ingesterIgnored = regexp.MustCompile(`total ignored: (\d+) out of \d+`)
	grouped         = regexp.MustCompile(`^(\d+) errors like: `)
	streamName      = regexp.MustCompile(`(?:stream|labels) '(\{.*?\})'`)
)

// classify names the reason of one distributor message, and whether it
// refused a whole stream rather than one entry.
func classify(msg string) (reason string, perStream bool) {
	switch {
	case strings.Contains(msg, "timestamp too old"), strings.Contains(msg, "too far behind"):
		return "too_old", false
	case strings.Contains(msg, "timestamp too new"):
		return "too_new", false
	case strings.Contains(msg, "max entry size"), strings.Contains(msg, "line too long"):
		return "line_too_long", false
	case strings.Contains(msg, "out of order"):
		return "out_of_order", false
	case strings.Contains(msg, "structured metadata"):
		return "bad_structured_metadata", false
	case strings.Contains(msg, "label"):
		return "bad_labels", true
	}
	return "rejected_400", false
}
