package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Reading Loki back: every entry of a tenant, paged forward by time (Loki
// answers at most a page's worth of entries per query, and refuses answers
// over 4 MB), and the newest entry, for the freshness spot-check.

// pageSize is how many entries one query asks for: 5,000 of the soak's
// lines (zap's are the longest, ~250 B) stay well under Loki's 4 MB.
const pageSize = 5000

// entry is one entry of a query's answer.
type entry struct {
	labels map[string]string
	key    string // labels and line: what a page's overlap is matched by
	ts     int64
	line   string
}

// overlap carries, from one page to the next, the entries at the page's
// newest time: the next page starts at that time (Loki's start is
// inclusive) and returns them again. They are matched by count, so a line
// Loki really holds twice at one time is still counted twice.
type overlap struct {
	ts   int64
	left map[string]int // labels+line → copies the next page repeats
}

// fresh returns the entries of page the page before did not return, and
// the overlap for the page after.
func (o overlap) fresh(page []entry) ([]entry, overlap) {
	left := make(map[string]int, len(o.left))
	for k, n := range o.left {
		left[k] = n
	}
	var out []entry
	next := overlap{ts: o.ts, left: map[string]int{}}
	for _, e := range page {
		next.ts = max(next.ts, e.ts)
		if e.ts == o.ts && left[e.key] > 0 {
			left[e.key]--
			continue
		}
		out = append(out, e)
	}
	for _, e := range page {
		if e.ts == next.ts {
			next.left[e.key]++
		}
	}
	return out, next
}

// readAll calls fn for every entry of selector as tenant between from and
// to, each once, oldest first per stream; it returns how many there were.
func readAll(ctx context.Context, lokiURL, tenant, selector string, from, to time.Time, fn func(labels map[string]string, line string)) (int, error) {
	start := from.UnixNano()
	o := overlap{ts: -1}
	n := 0
	for {
		page, err := queryRange(ctx, lokiURL, tenant, selector, start, to.UnixNano(), pageSize, "forward")
		if err != nil {
			return n, err
		}
		fresh, next := o.fresh(page)
		for _, e := range fresh {
			fn(e.labels, e.line)
		}
		n += len(fresh)
		if len(page) < pageSize {
			return n, nil
		}
		if len(fresh) == 0 {
			return n, fmt.Errorf("%s as %s: more than %d entries at %d ns: cannot page past them", selector, tenant, pageSize, next.ts)
		}
		start, o = next.ts, next
	}
}

// newest returns the time of the newest entry of selector as tenant within
// the last span (zero time when there is none).
func newest(ctx context.Context, lokiURL, tenant, selector string, span time.Duration) (time.Time, error) {
	now := time.Now()
	es, err := queryRange(ctx, lokiURL, tenant, selector, now.Add(-span).UnixNano(), now.Add(time.Minute).UnixNano(), 1, "backward")
	if err != nil || len(es) == 0 {
		return time.Time{}, err
	}
	return time.Unix(0, es[0].ts), nil
}

// queryRange runs one query_range and flattens its streams' entries.
func queryRange(ctx context.Context, lokiURL, tenant, logql string, start, end int64, limit int, direction string) ([]entry, error) {
	v := url.Values{}
	v.Set("query", logql)
	v.Set("start", strconv.FormatInt(start, 10))
	v.Set("end", strconv.FormatInt(end, 10))
	v.Set("limit", strconv.Itoa(limit))
	v.Set("direction", direction)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, lokiURL+"/loki/api/v1/query_range?"+v.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Scope-OrgID", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loki query %s as %s: %s: %.300s", logql, tenant, resp.Status, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Stream map[string]string `json:"stream"`
				Values [][2]string       `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("loki answer: %v: %.300s", err, body)
	}
	var out []entry
	for _, s := range r.Data.Result {
		ls := fmt.Sprint(s.Stream) // fmt sorts a map's keys
		for _, v := range s.Values {
			ts, err := strconv.ParseInt(v[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("loki answer: time %q: %w", v[0], err)
			}
			out = append(out, entry{labels: s.Stream, key: ls + "\x00" + v[1], ts: ts, line: v[1]})
		}
	}
	return out, nil
}
