package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// The live tap (server.tap, podtail tap): GET /tap streams the entries
// passing through the collector's Streams as NDJSON, one object per line,
// flushed as they come:
//
//	{"listening":{"tenant":"acme","app":"shop","point":"shipped","rate":1000}}
//	{"time":"2025-01-02T03:04:05.123456789Z","point":"shipped","tenant":"acme","labels":{...},"metadata":{...},"line":"..."}
//	{"missed":{"over_rate":120,"slow":0}}
//
// The first line says what the stream holds; entries follow (TapEntry), and
// a "missed" line, at most once a second, when the counts of entries not
// shown have grown: over the rate asked for, or while this client read too
// slowly (the collector never waits for it). Query: tenant, app (empty or
// absent: all), stage (absent: as shipped; 0: before the stages; N: after
// the Nth), rate (entries per second at most; absent: DefaultTapRate; 0: no
// bound but the buffer).

// TapPath is where the tap is served.
const TapPath = "/tap"

// DefaultTapRate is how many entries per second a tap client gets at most
// unless it asks otherwise: more than anyone reads, few enough that the
// copies cost the pipeline little.
const DefaultTapRate = 1000

// maxTapClients bounds the clients tapping at once: each holds a buffer of
// up to 4 MiB.
const maxTapClients = 8

// TapListening is the first line of a tap's stream: what it shows.
type TapListening struct {
	Tenant string `json:"tenant,omitempty"`
	App    string `json:"app,omitempty"`
	Point  string `json:"point"`
	Rate   int    `json:"rate"`
}

// TapMissed counts the entries a tap's client did not get so far.
type TapMissed struct {
	OverRate uint64 `json:"over_rate"`
	Slow     uint64 `json:"slow"`
}

// TapEntry is one entry of a tap's stream.
type TapEntry struct {
	Time time.Time `json:"time"`
	// Point is where it was taken: "before the stages", "after stage 2 of
	// 3", "shipped".
	Point    string            `json:"point"`
	Tenant   string            `json:"tenant"`
	Labels   map[string]string `json:"labels"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Line     string            `json:"line"`
	// Dropped is why a stage or guard dropped it (it is not shipped).
	Dropped string `json:"dropped,omitempty"`
}

// TapRecord is any line of a tap's stream, for clients: Listening, Missed,
// or else an entry.
type TapRecord struct {
	TapEntry
	Listening *TapListening `json:"listening,omitempty"`
	Missed    *TapMissed    `json:"missed,omitempty"`
}

// WithTap serves the tap under TapPath when tap is not nil (server.tap: off
// by default, since it shows log content). Taps end when ctx does (the
// collector stops or reloads), so that they do not hold up its shutdown.
func WithTap(ctx context.Context, tap *pipeline.Tap) Option {
	return func(mux *http.ServeMux) {
		if tap == nil {
			return
		}
		mux.Handle(TapPath, &tapHandler{ctx: ctx, tap: tap, slots: make(chan struct{}, maxTapClients)})
	}
}

type tapHandler struct {
	ctx   context.Context
	tap   *pipeline.Tap
	slots chan struct{}
}

// tapFilter reads a tap's query.
func tapFilter(q url.Values) (pipeline.TapFilter, error) {
	f := pipeline.TapFilter{Tenant: q.Get("tenant"), App: q.Get("app"), Point: pipeline.TapShipped, Rate: DefaultTapRate}
	if s := q.Get("stage"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return f, fmt.Errorf("stage %q: want 0 (before the stages) or N >= 1 (after the Nth)", s)
		}
		f.Point = pipeline.TapPoint(n)
	}
	if s := q.Get("rate"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return f, fmt.Errorf("rate %q: want entries per second, 0 for no bound", s)
		}
		f.Rate = n
	}
	return f, nil
}

func (h *tapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	f, err := tapFilter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		http.Error(w, fmt.Sprintf("%d taps already; try again when one ends", maxTapClients), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(h.ctx, cancel)()

	l := h.tap.Listen(f)
	defer l.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	// A client that stops reading must not hold this goroutine (and the
	// collector's shutdown) for ever: each write has a deadline.
	send := func(v any) error {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return enc.Encode(v)
	}
	if send(map[string]TapListening{"listening": {Tenant: f.Tenant, App: f.App, Point: f.Point.String(), Rate: f.Rate}}) != nil || rc.Flush() != nil {
		return
	}
	var missed TapMissed
	reported := time.Now()
	for {
		e, ok := l.Next(ctx, time.Second)
		if !ok {
			return
		}
		// What waits goes out in one flush (a few hundred at most, so that
		// a missed count is not held back long).
		for n := 0; e != nil && n < 256; n++ {
			if send(tapEntry(e)) != nil {
				return
			}
			e = l.Ready()
		}
		if e != nil && send(tapEntry(e)) != nil {
			return
		}
		if over, slow := l.Missed(); (over != missed.OverRate || slow != missed.Slow) && time.Since(reported) >= time.Second {
			missed, reported = TapMissed{OverRate: over, Slow: slow}, time.Now()
			if send(map[string]TapMissed{"missed": missed}) != nil {
				return
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// tapEntry is e as the stream shows it.
func tapEntry(e *pipeline.TapEntry) TapEntry {
	out := TapEntry{Time: e.Time.UTC(), Point: e.Where(), Tenant: e.Tenant, Labels: e.Labels, Line: e.Line, Dropped: e.Dropped}
	if len(e.Metadata) > 0 {
		out.Metadata = make(map[string]string, len(e.Metadata))
		for _, m := range e.Metadata {
			out.Metadata[m.Name] = m.Value
		}
	}
	return out
}
