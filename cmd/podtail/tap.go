package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/server"
)

// tapOpts are podtail tap's flags.
type tapOpts struct {
	listen, tenant, app string
	stage               int
	stageSet            bool // --stage given
	rate                int
	json                bool
}

func newTapCmd(load loader) *cobra.Command {
	var o tapOpts
	var afterStages bool
	cmd := &cobra.Command{
		Use:   "tap [--listen ADDR] [--tenant T] [--app A] [--stage N|--after-stages] [--json]",
		Short: "Show, live, the entries passing through a running podtail",
		Long: `Show, live, the entries passing through a running podtail (podtail run with
server.tap: true; off by default, since whoever reaches server.listen then
sees log content), one line each: time, Loki stream labels, line, structured
metadata. It reads /tap on the running podtail's server.listen.

Where in the pipeline entries are shown: --after-stages (the default) as they
are shipped: the Loki stream's labels, the time made unique, the source's
metadata, and those a stage or guard dropped, with the reason; --stage 0
before the stages, the line as it was read; --stage N after the Nth stage of
the entry's pipeline (counted from 1 as configured, a leading multiline spec
not counted; after its last when it has fewer).

The tap costs the collector one atomic load per line while nobody listens.
A tap takes at most --rate entries per second, and what it does not read in
time is left out: podtail never waits for it. Both are counted on stderr.`,
		Example: `  # What podtail ships for one application, live:
  podtail tap --app shop

  # One tenant's lines before the stages, as JSON (one object per line):
  podtail tap --tenant acme --stage 0 --json

  # A podtail listening elsewhere, every entry it can copy:
  podtail tap --listen 127.0.0.1:9080 --app shop --rate 0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.stageSet = cmd.Flags().Changed("stage")
			if o.listen == "" {
				cfg, err := load(cmd.Flags())
				if err != nil {
					return err
				}
				o.listen = cfg.Server.Listen
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return tap(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "", "the running podtail's server.listen (default: this configuration's)")
	f.StringVar(&o.tenant, "tenant", "", "only this tenant's entries")
	f.StringVar(&o.app, "app", "", "only this application's entries (its application label)")
	f.IntVar(&o.stage, "stage", 0, "0: before the stages; N: after the Nth stage")
	f.BoolVar(&afterStages, "after-stages", false, "as shipped, after the stages, labels and guards (the default)")
	f.IntVar(&o.rate, "rate", server.DefaultTapRate, "entries per second at most; 0: as many as the tap keeps up with")
	f.BoolVar(&o.json, "json", false, "one JSON object per entry (the server's NDJSON)")
	cmd.MarkFlagsMutuallyExclusive("stage", "after-stages")
	return cmd
}

// tapURL is the tap's address on a podtail serving listen (host:port,
// or a URL): an unspecified host is this one.
func tapURL(listen string, o tapOpts) (string, error) {
	base := listen
	if !strings.Contains(base, "://") {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return "", fmt.Errorf("--listen %q: %w", listen, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		base = "http://" + net.JoinHostPort(host, port)
	}
	q := url.Values{}
	if o.tenant != "" {
		q.Set("tenant", o.tenant)
	}
	if o.app != "" {
		q.Set("app", o.app)
	}
	if o.stageSet {
		if o.stage < 0 {
			return "", errors.New("--stage: want 0 (before the stages) or N >= 1")
		}
		q.Set("stage", strconv.Itoa(o.stage))
	}
	if o.rate < 0 {
		return "", errors.New("--rate: want entries per second, 0 for no bound")
	}
	q.Set("rate", strconv.Itoa(o.rate))
	return strings.TrimSuffix(base, "/") + server.TapPath + "?" + q.Encode(), nil
}

// tap prints what the running podtail's tap streams until ctx ends (nil)
// or the stream does (an error: podtail stopped or reloaded).
func tap(ctx context.Context, o tapOpts, stdout, stderr io.Writer) error {
	u, err := tapURL(o.listen, o)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	// The stream lasts as long as the tap: only connecting and the first
	// answer have a deadline.
	client := &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 10 * time.Second,
	}}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("tap: no podtail answers at %s: %w (is podtail run serving server.listen there?)", o.listen, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fmt.Errorf("tap: the podtail at %s does not serve the tap: set server.tap: true in its configuration (off by default, as it shows log content)", o.listen)
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("tap: the podtail at %s answered %s: %s", o.listen, resp.Status, strings.TrimSpace(string(b)))
	}
	in := bufio.NewReaderSize(resp.Body, 64<<10)
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 0 {
			if perr := printTap(out, stderr, line, o); perr != nil {
				return perr
			}
		}
		if in.Buffered() == 0 || err != nil {
			if ferr := out.Flush(); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C
			}
			return fmt.Errorf("tap: the podtail at %s ended the tap (it stopped or reloaded its configuration)", o.listen)
		}
	}
}

// printTap prints one line of the tap's stream: an entry on out, what it
// listens to and what it missed on stderr.
func printTap(out *bufio.Writer, stderr io.Writer, line []byte, o tapOpts) error {
	var r server.TapRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("tap: the podtail at %s sent %.80q: %w", o.listen, line, err)
	}
	switch {
	case r.Listening != nil:
		l := r.Listening
		what := "every entry"
		switch {
		case l.Tenant != "" && l.App != "":
			what = fmt.Sprintf("tenant %s, application %s", l.Tenant, l.App)
		case l.Tenant != "":
			what = "tenant " + l.Tenant
		case l.App != "":
			what = "application " + l.App
		}
		rate := "as many as this tap keeps up with"
		if l.Rate > 0 {
			rate = fmt.Sprintf("at most %d per second", l.Rate)
		}
		fmt.Fprintf(stderr, "podtail tap: %s, %s, from %s (%s); Ctrl-C stops\n", what, l.Point, o.listen, rate)
	case r.Missed != nil:
		m := r.Missed
		fmt.Fprintf(stderr, "podtail tap: %d entries not shown so far: %d over the rate, %d while this tap read too slowly\n",
			m.OverRate+m.Slow, m.OverRate, m.Slow)
	case o.json:
		_, _ = out.Write(line)
	default:
		_, _ = out.WriteString(readableTap(&r.TapEntry))
	}
	return nil
}

// readableTap is one entry on one line: time, labels, line, metadata;
// a dropped entry says where and why. The line is log content, so its
// control characters are escaped: it cannot move the cursor, clear the
// screen or run on over several lines.
func readableTap(e *server.TapEntry) string {
	var b strings.Builder
	b.WriteString(e.Time.Local().Format("2006-01-02T15:04:05.000000000Z07:00"))
	b.WriteByte(' ')
	b.WriteString(pipeline.RenderLabels(e.Labels))
	b.WriteByte(' ')
	if e.Dropped != "" {
		fmt.Fprintf(&b, "[dropped %s: %s] ", e.Point, e.Dropped)
	}
	writeEscaped(&b, e.Line)
	if len(e.Metadata) > 0 {
		b.WriteString("  ")
		b.WriteString(pipeline.RenderLabels(e.Metadata))
	}
	b.WriteByte('\n')
	return b.String()
}

// writeEscaped writes s with control and bidirectional-formatting
// characters (but tab) escaped as Go would quote them.
func writeEscaped(b *strings.Builder, s string) {
	for _, r := range s {
		if r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029') {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
}

// newTap is what podtail run's Streams are tapped through (server.tap):
// nil while off, and then Send does not even load it.
func newTap(cfg *config.Config) *pipeline.Tap {
	if !cfg.Server.Tap {
		return nil
	}
	return pipeline.NewTap()
}
