package loki

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"
)

// maxErrBody is how much of an error response is kept for logs and errors.
const maxErrBody = 1 << 10

// maxRefusalBody is how much of an error response is read to learn which
// entries Loki refused: Loki lists one error per refused entry.
const maxRefusalBody = 4 << 20

// statusError is a push Loki answered with something other than 2xx.
type statusError struct {
	tenant string
	url    string
	status int
	body   string // for messages: at most maxErrBody
	full   string // for reading a 400's verdicts: at most maxRefusalBody
}

func (e *statusError) Error() string {
	return fmt.Sprintf("loki push for tenant %q to %s: HTTP %d: %s", e.tenant, e.url, e.status, e.body)
}

// retryable reports whether Loki might accept the same batch later. 429 and
// 5xx are load or outage; other 4xx (line too long, too old, bad labels,
// unauthorized) will fail the same way forever, and for a 400 Loki has
// already ingested the valid part of the batch. Anything outside 4xx/5xx
// (a redirect we could not follow, say) is a setup problem, not a verdict on
// the data, so it is retried.
func (e *statusError) retryable() bool {
	return e.status == http.StatusTooManyRequests || e.status/100 != 4
}

// push delivers b for t, retrying as configured, then acknowledges it.
// It returns without acknowledging only when ctx ends.
func (c *Client) push(ctx context.Context, t *tenant, b *batch) {
	tenant := t.id
	log := c.log.WithLazy(zap.String("tenant", tenant), zap.Int("entries", b.entries)) // lazy: most pushes log nothing
	c.m.batchEntries.Observe(float64(b.entries))

	if len(b.replay) > 0 {
		c.skipStored(ctx, t, b, log)
		if ctx.Err() != nil {
			return
		}
		if b.skipped == b.entries {
			c.settle(t, b) // Loki holds all of it
			return
		}
	}
	if b.unencodable > 0 {
		// Resending cannot fix a time protobuf cannot carry.
		log.Error("Dropping entries whose time a push request cannot carry (outside the years 1 to 9999)", zap.Int("dropped", b.unencodable))
		c.m.dropped.WithLabelValues(tenant, "encode").Add(float64(b.unencodable))
		c.book.settled(tenant, 0, map[string]int{"encode": b.unencodable})
		if b.unencodable+b.skipped == b.entries {
			c.settle(t, b)
			return
		}
	}
	pb := newPushBody()
	defer func() { pb.release() }()
	encodeBody(pb, b.streams)
	// The body holds it all now, compressed (a fifth of the size with zap
	// lines): the entries' memory goes back while the push and its retries
	// take however long Loki takes. (Their room in the queue stays taken
	// until they are acknowledged.)
	b.release()

	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.cfg.MinBackoff),
		backoff.WithMaxInterval(c.cfg.MaxBackoff),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(c.cfg.MaxRetryTime), // 0: never stop
	)
	uncertain := false // the last attempt may have been stored (see uncertainError)
	checks := 0
	for attempt := 1; ; attempt++ {
		var err error
		if uncertain {
			// Asked now, after the backoff, not as soon as the answer came:
			// an ingester that made Loki answer 500 may still be storing.
			checks++
			if next := c.afterUncertain(ctx, tenant, pb, checks == 1, log); next != pb {
				// Nothing, or only the streams Loki lacks, in a body of
				// their own.
				pb.release()
				pb = next
			}
			if ctx.Err() != nil {
				return
			}
		}
		if pb == nil {
			log.Info("Loki had stored a push whose outcome was uncertain; not sending it again", zap.Int("attempts", attempt-1))
		} else {
			err = c.post(ctx, tenant, pb)
		}
		if ctx.Err() != nil {
			return // hard stop: not delivered, so not acknowledged
		}
		if err == nil {
			if attempt > 1 {
				log.Info("Delivered a batch after retrying", zap.Int("attempts", attempt))
			}
			c.m.entriesSent.WithLabelValues(tenant).Add(float64(b.entries - b.skipped - b.unencodable))
			c.book.settled(tenant, b.entries-b.skipped-b.unencodable, nil)
			c.m.bytesSent.WithLabelValues(tenant).Add(float64(b.bytes - b.skippedBytes - b.unencodableBytes))
			c.settle(t, b)
			return
		}

		uncertain = isUncertain(err)
		reason := reasonNetwork
		var se *statusError
		if errors.As(err, &se) {
			if !se.retryable() {
				c.reject(t, b, se, log)
				return
			}
			reason = strconv.Itoa(se.status)
		}

		wait := bo.NextBackOff()
		if wait == backoff.Stop {
			log.Error("Giving up on a batch: max_retry_time exceeded",
				zap.Int("attempts", attempt), zap.Duration("max_retry_time", c.cfg.MaxRetryTime), zap.Error(err))
			c.drop(t, b, map[string]int{reasonRetriesExhausted: b.entries})
			return
		}
		// The library's jitter may land outside [MinBackoff, MaxBackoff];
		// the config promises those bounds.
		wait = min(max(wait, c.cfg.MinBackoff), c.cfg.MaxBackoff)
		c.m.retries.WithLabelValues(tenant, reason).Inc()
		c.m.entriesRetried.WithLabelValues(tenant, reason).Add(float64(b.entries))
		// Warn when a batch first fails; later attempts only repeat that.
		lvl := zap.DebugLevel
		if attempt == 1 {
			lvl = zap.WarnLevel
		}
		log.Log(lvl, "Push failed; retrying", zap.Int("attempt", attempt), zap.Duration("backoff", wait), zap.Error(err))
		if !sleep(ctx, wait) {
			return
		}
	}
}

// drop gives b up for good: counted by reason, then acknowledged so that its
// sources' positions move past it instead of resending it forever.
func (c *Client) drop(t *tenant, b *batch, reasons map[string]int) {
	for reason, n := range reasons {
		c.m.dropped.WithLabelValues(t.id, reason).Add(float64(n))
	}
	c.book.settled(t.id, 0, reasons)
	c.settle(t, b)
}

// reject settles a batch Loki answered with a final 4xx. For a 400 Loki has
// already stored every entry it did not complain about, so only the entries
// its answer names are counted as dropped; the rest count as sent.
func (c *Client) reject(t *tenant, b *batch, se *statusError, log *zap.Logger) {
	reasons := map[string]int{}
	dropped := 0
	if se.status == http.StatusBadRequest {
		reasons, dropped = refused(se.full, b)
	}
	if dropped == 0 || dropped > b.entries {
		// An answer we cannot read, or a different status: assume the worst.
		reasons, dropped = map[string]int{"rejected_" + strconv.Itoa(se.status): b.entries}, b.entries
	}
	if se.status == http.StatusBadRequest {
		log.Warn("Loki refused entries; they are dropped, the rest of the batch was stored",
			zap.Int("status", se.status), zap.Int("dropped", dropped), zap.Any("reasons", reasons), zap.String("body", se.body))
	} else {
		// 401, 403, 404, 413...: nothing was stored, and sending the same
		// request again would meet the same answer.
		log.Error("Loki refused a whole batch; it is dropped (check loki.url and the credentials)",
			zap.Int("status", se.status), zap.Int("dropped", dropped), zap.String("body", se.body))
	}
	if sent := b.entries - b.skipped - dropped; sent > 0 {
		c.m.entriesSent.WithLabelValues(t.id).Add(float64(sent))
		c.book.settled(t.id, sent, nil)
	}
	c.drop(t, b, reasons)
}

// post sends one push request. It returns nil on 2xx, a *statusError for any
// other response, and a wrapped transport error otherwise.
func (c *Client) post(parent context.Context, tenant string, pb *pushBody) error {
	ctx, cancel := context.WithTimeout(parent, c.cfg.Timeout)
	defer cancel()
	body := pb.reader()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.pushURL, body)
	if err != nil {
		_ = body.Close()
		return fmt.Errorf("loki push for tenant %q: %w", tenant, err)
	}
	req.ContentLength = int64(pb.size)
	req.GetBody = func() (io.ReadCloser, error) { return pb.reader(), nil } // a redirect's
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if tenant != "" { // Loki without auth_enabled wants no header at all
		req.Header.Set("X-Scope-OrgID", tenant)
	}

	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) { wrote.Store(i.Err == nil) },
	}))
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.m.pushDuration.WithLabelValues(tenant, reasonNetwork).Observe(time.Since(start).Seconds())
		err = fmt.Errorf("loki push for tenant %q: %w", tenant, err)
		if parent.Err() == nil {
			c.book.pushed(tenant, time.Since(start), 0, err)
		}
		// Sent in full and no answer, not even by loki.timeout: Loki may be
		// storing it still. Only shutdown (parent) makes the outcome moot.
		if wrote.Load() && parent.Err() == nil {
			return &uncertainError{err}
		}
		return err
	}
	limit := int64(maxErrBody)
	if resp.StatusCode == http.StatusBadRequest {
		limit = maxRefusalBody
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
	_ = resp.Body.Close()
	took := time.Since(start)
	c.m.pushDuration.WithLabelValues(tenant, strconv.Itoa(resp.StatusCode)).Observe(took.Seconds())

	if resp.StatusCode/100 == 2 {
		c.book.pushed(tenant, took, resp.StatusCode, nil)
		return nil
	}
	text := strings.TrimSpace(string(msg[:min(len(msg), maxErrBody)]))
	if len(msg) > maxErrBody {
		text += " …(truncated)"
	}
	se := &statusError{tenant: tenant, url: c.pushURL, status: resp.StatusCode, body: text, full: string(msg)}
	c.book.pushed(tenant, took, resp.StatusCode, se)
	if resp.StatusCode/100 == 5 && !ringRefusal(text) {
		// Loki's distributor answers 500 when an ingester did not answer in
		// time, and the ingester may have stored the push all the same (a
		// gateway's 502/504 likewise): resending it blindly stored 122,584
		// entries twice in one e2e run (TestHostileTenant).
		return &uncertainError{se}
	}
	return se
}

// ringRefusals are the errors of Loki's distributor (dskit's ring, through
// DoBatch) that come from choosing ingesters, before anything is sent to
// one: a push answered with them stored nothing. Loki answers them while it
// starts and while it stops; asking its query API then only hung until
// loki.timeout, and kept Loki's graceful stop waiting for the query.
var ringRefusals = []string{"empty ring", "live replicas required", "too many unhealthy instances in the ring"}

// ringRefusal reports whether a 5xx answer's text is one of ringRefusals.
func ringRefusal(text string) bool {
	for _, r := range ringRefusals {
		if strings.Contains(text, r) {
			return true
		}
	}
	return false
}

// sleep waits for d or until ctx ends, reporting whether it waited it out.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pushBody is a push request's body, in chunks of the queue's memory
// (outside the heap, like the entries it is made of), reused by later
// pushes: the bodies were 70 % of what podtail allocated over 100 files,
// and pooled on the heap they were a quarter of its live heap over 1,000
// files. The chunks go back only when nothing can read them any more: the
// push holds one reference (release when done), and each request one,
// which the HTTP transport gives back by closing the request's body (it
// always does, and may still be writing the body after the answer came).
type pushBody struct {
	parts [][]byte // each full (bodyPart bytes) but the last
	size  int
	refs  atomic.Int32
}

// bodyPart is the size of a body's chunks: the largest the queue has.
const bodyPart = maxChunk

var bodies = sync.Pool{New: func() any { return new(pushBody) }}

// newPushBody returns an empty body, held once.
func newPushBody() *pushBody {
	pb := bodies.Get().(*pushBody)
	pb.refs.Store(1)
	return pb
}

// write appends p to the body.
func (pb *pushBody) write(p []byte) {
	for len(p) > 0 {
		k := len(pb.parts)
		if k == 0 || len(pb.parts[k-1]) == bodyPart {
			pb.parts = append(pb.parts, getChunk(bodyPart))
			k++
		}
		last := pb.parts[k-1]
		n := copy(last[len(last):bodyPart], p)
		pb.parts[k-1] = last[:len(last)+n]
		pb.size += n
		p = p[n:]
	}
}

// bytes returns the body in one slice of its own.
func (pb *pushBody) bytes() []byte {
	out := make([]byte, 0, pb.size)
	for _, p := range pb.parts {
		out = append(out, p...)
	}
	return out
}

// release gives up one reference; the last one gives the chunks back.
// Safe on nil (no body).
func (pb *pushBody) release() {
	if pb == nil {
		return
	}
	switch n := pb.refs.Add(-1); {
	case n < 0:
		panic("loki: push body released more often than held")
	case n == 0:
		for i, p := range pb.parts {
			chunks.Put(p)
			pb.parts[i] = nil
		}
		pb.parts, pb.size = pb.parts[:0], 0
		bodies.Put(pb)
	}
}

// reader returns a reader of the body for one request, holding a
// reference until it is closed.
func (pb *pushBody) reader() io.ReadCloser {
	pb.refs.Add(1)
	return &bodyReader{pb: pb}
}

type bodyReader struct {
	pb     *pushBody
	part   int // next part to read from
	off    int // offset in it
	closed atomic.Bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.closed.Load() {
		return 0, errors.New("loki: push body read after Close")
	}
	n := 0
	for n < len(p) && r.part < len(r.pb.parts) {
		c := r.pb.parts[r.part]
		k := copy(p[n:], c[r.off:])
		n += k
		if r.off += k; r.off == len(c) {
			r.part, r.off = r.part+1, 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Close gives the body's reference back, once however often it is called.
func (r *bodyReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.pb.release()
	}
	return nil
}
