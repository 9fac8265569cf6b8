package loki

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/grafana/loki/pkg/push"
	"go.uber.org/zap"
)

// A push whose answer was lost (the connection dropped after the whole
// request went out) may or may not have been stored. Sending it again is
// what at-least-once demands, but Loki recognises a resent entry as a
// duplicate only while it sits in the stream's head block (about the newest
// thousand lines): measured through a proxy that drops answers, 69 lost
// answers left 888 duplicates among 100,000 lines. So before resending such
// a push, podtail asks Loki, for each stream, whether the stream's last
// entry of the batch is there, and resends only the streams where it is not.
// A stream's entries of one push are appended in order, so its last entry
// being stored means all of them were.
//
// This needs Loki's query API at the push URL's base, with the same
// credentials; when that does not answer (a push-only gateway), the whole
// batch is resent, counted as "unverified".

// queryRangeURL is Loki's query_range endpoint beside the push URL.
func (c Config) queryRangeURL() string {
	u, _ := url.Parse(c.URL)
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), pushPath) + "/loki/api/v1/query_range"
	u.RawPath = ""
	return u.String()
}

// ambiguousError is a push that was sent in full and got no answer.
type ambiguousError struct{ err error }

func (e *ambiguousError) Error() string {
	return e.err.Error() + " (after the push was sent: it may have been stored)"
}
func (e *ambiguousError) Unwrap() error { return e.err }

// unconfirmed returns the streams of b whose last entry Loki does not hold,
// or an error when Loki could not be asked.
func (c *Client) unconfirmed(ctx context.Context, tenant string, b *batch) ([]push.Stream, error) {
	var missing []push.Stream
	for _, s := range b.streams {
		if len(s.Entries) == 0 {
			continue
		}
		last := s.Entries[len(s.Entries)-1]
		found, err := c.holds(ctx, tenant, s.Labels, last)
		if err != nil {
			return nil, err
		}
		if !found {
			missing = append(missing, s)
		}
	}
	return missing, nil
}

// holds asks Loki whether stream labels holds e (same time, same line).
func (c *Client) holds(ctx context.Context, tenant, labels string, e push.Entry) (bool, error) {
	ns := e.Timestamp.UnixNano()
	values, err := c.queryStream(ctx, tenant, labels, ns, ns+1, 100)
	if err != nil {
		return false, fmt.Errorf("asking Loki whether a lost push was stored: %w", err)
	}
	want := strconv.FormatInt(ns, 10)
	for _, v := range values {
		if v[0] == want && v[1] == e.Line {
			return true, nil
		}
	}
	return false, nil
}

// queryStream returns up to limit entries (time in ns as text, line) of the
// stream with exactly labels in [from, to), oldest first, through Loki's
// query_range API.
func (c *Client) queryStream(ctx context.Context, tenant, labels string, from, to int64, limit int) ([][2]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	q := url.Values{
		"query":     {labels},
		"start":     {strconv.FormatInt(from, 10)},
		"end":       {strconv.FormatInt(to, 10)},
		"limit":     {strconv.Itoa(limit)},
		"direction": {"forward"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.queryURL+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrBody))
		return nil, fmt.Errorf("%s: HTTP %d: %s", c.queryURL, resp.StatusCode, msg)
	}
	var r struct {
		Data struct {
			Result []struct {
				Values [][2]string `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", c.queryURL, err)
	}
	var out [][2]string
	for _, s := range r.Data.Result {
		out = append(out, s.Values...)
	}
	return out, nil
}

// afterLostAnswer decides what to resend after an ambiguous push of b and
// returns the body to send next, or nil when Loki already has everything.
func (c *Client) afterLostAnswer(ctx context.Context, tenant string, b *batch, body []byte, log *zap.Logger) []byte {
	missing, err := c.unconfirmed(ctx, tenant, b)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("Cannot tell whether a push whose answer was lost was stored; sending it again (Loki may keep duplicates)", zap.Error(err))
		}
		c.m.ambiguous.WithLabelValues(tenant, "unverified").Inc()
		return body
	case len(missing) == 0:
		c.m.ambiguous.WithLabelValues(tenant, "stored").Inc()
		return nil
	case len(missing) == len(b.streams):
		c.m.ambiguous.WithLabelValues(tenant, "not_stored").Inc()
		return body
	}
	c.m.ambiguous.WithLabelValues(tenant, "partly_stored").Inc()
	out, err := (&push.PushRequest{Streams: missing}).Marshal()
	if err != nil {
		return body
	}
	return snappyEncode(out)
}

// isAmbiguous reports whether err is a push that may have been stored.
func isAmbiguous(err error) bool {
	var a *ambiguousError
	return errors.As(err, &a)
}
