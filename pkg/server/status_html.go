package server

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"
)

// The page: status/page.html rendered with the report, its style and
// script beside it (status/status.css, status/status.js), all embedded in
// the binary and served from /status/: nothing is fetched from elsewhere.
// ?part=main renders only the part that changes, which the script fetches
// to refresh the page in place; without the script, a <noscript> refresh
// reloads it.

//go:embed status
var statusFiles embed.FS

var pageTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"bytes":    fmtBytes,
	"seconds":  fmtSeconds,
	"ago":      fmtAgo,
	"counts":   fmtCounts,
	"filterQS": func(tenant, app string) template.URL { return template.URL("status" + query(tenant, app)) },
	"jsonQS":   func(tenant, app string) template.URL { return template.URL("status.json" + query(tenant, app)) },
	"base":     path.Base,
	"ms":       func(ms int64) float64 { return float64(ms) / 1000 },
	"deref":    func(b *bool) bool { return b != nil && *b },
}).ParseFS(statusFiles, "status/page.html"))

// refreshEvery is how often the page refreshes itself.
const refreshEvery = 2 * time.Second

func assetHandler() http.Handler {
	sub, _ := fs.Sub(statusFiles, "status")
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "status.css" && r.URL.Path != "status.js" {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// pageData is what page.html renders.
type pageData struct {
	*StatusReport
	TenantChoices, AppChoices []string // the filter's
	Now                       time.Time
	RefreshMS                 int64
	Lagging                   int // sources with a lag
	Failing                   int // sources with an error
	AllSources                int // before the filter
}

func (p *StatusProvider) serveHTML(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/status" {
		http.NotFound(w, r)
		return
	}
	rep, err := p.report(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	part := "page"
	if r.URL.Query().Get("part") == "main" {
		part = "main"
	}
	var b bytes.Buffer
	if err := RenderStatus(&b, rep, filterOf(r), part); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Nothing but this server's own files, and no framing by others.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	_, _ = w.Write(b.Bytes())
}

// RenderStatus writes the page of rep narrowed to f: the whole page, or
// with part "main" only what the script refreshes.
func RenderStatus(w *bytes.Buffer, rep *StatusReport, f Filter, part string) error {
	d := pageData{StatusReport: rep.Narrow(f), Now: rep.Time, RefreshMS: refreshEvery.Milliseconds(), AllSources: len(rep.Sources)}
	d.TenantChoices, d.AppChoices = rep.choices(f)
	for _, s := range d.Sources {
		if s.LagBytes > 0 {
			d.Lagging++
		}
		if s.LastError != "" {
			d.Failing++
		}
	}
	return pageTmpl.ExecuteTemplate(w, part, d)
}

// fmtBytes is n in B, KiB, MiB, GiB.
func fmtBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

// fmtSeconds is s seconds for people: "0 s", "0.4 ms", "1.6 ms", "250 ms",
// "1.5 s", "42 s", "3m04s", "2h05m".
func fmtSeconds(s float64) string {
	switch {
	case s <= 0:
		return "0 s"
	case s < 0.01:
		return fmt.Sprintf("%.2g ms", s*1000)
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case s < 10:
		return fmt.Sprintf("%.2g s", s)
	case s < 60:
		return fmt.Sprintf("%.0f s", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", int(s)/60, int(s)%60)
	}
	return fmt.Sprintf("%dh%02dm", int(s)/3600, int(s)%3600/60)
}

// fmtAgo is how long before now t was, for people ("never" for nil).
func fmtAgo(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	d := now.Sub(*t).Seconds()
	if d < 1 {
		return "just now"
	}
	return fmtSeconds(math.Round(d)) + " ago"
}

// fmtCounts is a count by reason, largest first: "429 × 12, 503 × 1".
func fmtCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s × %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// query is the query string of a filter, for links ("" without one).
func query(tenant, app string) string {
	v := url.Values{}
	if tenant != "" {
		v.Set("tenant", tenant)
	}
	if app != "" {
		v.Set("app", app)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}
