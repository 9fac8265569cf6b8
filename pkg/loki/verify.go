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

	"go.uber.org/zap"
)

// A push may have been stored although podtail never heard so: the whole
// request went out and the answer was lost or timed out, or Loki answered
// 5xx (its distributor says 500 when an ingester did not answer in time,
// and the ingester may have stored the push all the same). Sending it again
// is what at-least-once demands, but Loki recognises a resent entry as a
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

// uncertainError is a push that may have been stored: sent in full with no
// answer, or answered 5xx.
type uncertainError struct{ err error }

func (e *uncertainError) Error() string {
	return e.err.Error() + " (it may have been stored)"
}
func (e *uncertainError) Unwrap() error { return e.err }

// unconfirmed returns the streams whose last entry Loki does not hold, or
// an error when Loki could not be asked.
func (c *Client) unconfirmed(ctx context.Context, tenant string, streams []bodyStream) ([]bodyStream, error) {
	var missing []bodyStream
	for _, s := range streams {
		last, _, err := readEntry(s.last)
		if err != nil {
			return nil, fmt.Errorf("stream %s of a push body: %w", s.labels, err)
		}
		found, err := c.holds(ctx, tenant, s.labels, last.ns, last.line)
		if err != nil {
			return nil, err
		}
		if !found {
			missing = append(missing, s)
		}
	}
	return missing, nil
}

// holds asks Loki whether stream labels holds an entry of time ns and line.
func (c *Client) holds(ctx context.Context, tenant, labels string, ns int64, line string) (bool, error) {
	values, err := c.queryStream(ctx, tenant, labels, ns, ns+1, 100)
	if err != nil {
		return false, fmt.Errorf("asking Loki whether a push was stored: %w", err)
	}
	want := strconv.FormatInt(ns, 10)
	for _, v := range values {
		if v[0] == want && v[1] == line {
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

// afterUncertain decides what to resend after a push of body that may have
// been stored and returns the body to send next, or nil when Loki already
// has everything. It reads the streams back from body (the batch's entries
// were given back once it was encoded). first: the first such check for
// the batch (later ones, as during an outage behind a gateway that answers
// 502, log at debug level).
func (c *Client) afterUncertain(ctx context.Context, tenant string, body *pushBody, first bool, log *zap.Logger) *pushBody {
	streams, err := bodyStreams(body)
	if err != nil { // not a body this package wrote
		log.Error("Cannot read back a push body; sending it again as it is", zap.Error(err))
		c.m.uncertain.WithLabelValues(tenant, "unverified").Inc()
		return body
	}
	missing, err := c.unconfirmed(ctx, tenant, streams)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			lvl := zap.DebugLevel
			if first {
				lvl = zap.WarnLevel
			}
			log.Log(lvl, "Cannot tell whether a push that may have been stored was; sending it again (Loki may keep duplicates)", zap.Error(err))
		}
		c.m.uncertain.WithLabelValues(tenant, "unverified").Inc()
		return body
	case len(missing) == 0:
		c.m.uncertain.WithLabelValues(tenant, "stored").Inc()
		return nil
	case len(missing) == len(streams):
		c.m.uncertain.WithLabelValues(tenant, "not_stored").Inc()
		return body
	}
	c.m.uncertain.WithLabelValues(tenant, "partly_stored").Inc()
	msgs := make([][]byte, len(missing))
	for i, s := range missing {
		msgs[i] = s.msg
	}
	pb := newPushBody()
	encodeMsgs(pb, msgs)
	return pb
}

// isUncertain reports whether err is a push that may have been stored.
func isUncertain(err error) bool {
	var u *uncertainError
	return errors.As(err, &u)
}
