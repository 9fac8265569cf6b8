package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podtail/podtail/pkg/server"
)

// targetsFrom lists what the podtail at addr reads, from its /status.json
// (server.status): one line per source, or, with asJSON, one JSON object
// per source as the status gives it.
func targetsFrom(ctx context.Context, w io.Writer, addr string, f server.Filter, asJSON bool) error {
	u, err := statusURL(addr, f)
	if err != nil {
		return exitError{code: 2, err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking podtail at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s answered 404: is server.status enabled on that podtail?", u)
		}
		return fmt.Errorf("%s answered %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	var rep server.StatusReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return fmt.Errorf("%s: not a podtail status: %w", u, err)
	}
	if asJSON {
		enc := json.NewEncoder(w)
		for _, s := range rep.Sources {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		return nil
	}
	return printSources(w, &rep)
}

// statusURL is /status.json at addr ("host:port", or a URL, with or without
// the path) with the filter's query.
func statusURL(addr string, f server.Filter) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--from %q: want host:port or http://host:port", addr)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/status.json"), "/status") + "/status.json"
	q := url.Values{}
	if f.Tenant != "" {
		q.Set("tenant", f.Tenant)
	}
	if f.App != "" {
		q.Set("app", f.App)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// printSources writes the sources as a table, then one line on Loki and
// one per tenant Loki refuses.
func printSources(w io.Writer, rep *server.StatusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SOURCE\tKIND\tTENANT\tAPPLICATION\tVERSION\tSTREAM\tLOG DRIVER\tSTATE\tREAD\tACKED\tLAG\tLAG (S)\tLAST ERROR\n")
	for _, s := range rep.Sources {
		name := s.Container
		if s.Kind != "container" {
			name = s.Path
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.1f\t%s\n", name, s.Kind, s.Tenant, orDash(s.Application), orDash(s.Version),
			s.Stream, orDash(s.LogDriver), s.State, s.BytesRead, s.BytesAcked, s.LagBytes, s.LagSeconds, orDash(s.LastError))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	reach := "not asked yet"
	if r := rep.Loki.Reachable; r != nil && *r {
		reach = "reachable"
	} else if r != nil {
		reach = "unreachable: " + rep.Loki.Error
	}
	fmt.Fprintf(w, "loki %s: %s; queued %d of %d bytes\n", rep.Loki.URL, reach, rep.Loki.QueuedBytes, rep.Loki.QueueLimitBytes)
	for _, t := range rep.Tenants {
		switch {
		case !t.Allowed:
			fmt.Fprintf(w, "tenant %s: not in limits.tenants; its lines are dropped\n", t.Tenant)
		case t.Failing:
			fmt.Fprintf(w, "tenant %s: Loki refuses its pushes: %s\n", t.Tenant, t.LastError)
		}
	}
	return nil
}
