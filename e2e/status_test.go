package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/podtail/podtail/e2e/testbed"
)

// shotsDir is where the status page's screenshots are kept: bin/, which CI
// keeps as its artefacts.
const shotsDir = "../bin"

// pageRow is a source's row as a person sees it on the status page: the
// text of its cells.
type pageRow struct {
	Key, Kind, Source, Tenant, App, Version, Stream, Driver, State string
	Read, Acked, Lag, LagS, Error                                  string
}

// pageTenant is a tenant's row on the page.
type pageTenant struct {
	Tenant, Tags, Queued, Refusals, Error string
}

// pageView is what the page shows at one moment.
type pageView struct {
	URL     string
	Loki    string
	Rows    []pageRow
	Tenants []pageTenant
	Tenant  string // the filter's choices
	App     string
	Updated string
}

// readPage is the script that reads pageView off the page: the cells'
// visible text (innerText), as a person reads them.
const readPage = `(() => {
  const txt = (r, sel) => { const c = r.querySelector(sel); return c ? c.innerText.trim() : ""; };
  return {
    URL: location.pathname + location.search,
    Loki: txt(document, "#loki-state"),
    Tenant: document.getElementById("f-tenant").value,
    App: document.getElementById("f-app").value,
    Updated: txt(document, "#updated"),
    Rows: Array.from(document.querySelectorAll("#sources tr.source")).map(r => ({
      Key: r.dataset.key, Kind: txt(r, ".kind"), Source: txt(r, "td.src b"), Tenant: txt(r, "td.tenant"),
      App: txt(r, "td.app"), Version: txt(r, "td.version"), Stream: txt(r, "td.stream"), Driver: txt(r, "td.driver"),
      State: txt(r, "td.state"), Read: txt(r, "td.read"), Acked: txt(r, "td.acked"), Lag: txt(r, "td.lag"),
      LagS: txt(r, "td.lag-s"), Error: txt(r, "td.error"),
    })),
    Tenants: Array.from(document.querySelectorAll("#tenants tr.tenant")).map(r => ({
      Tenant: r.dataset.tenant, Tags: Array.from(r.querySelectorAll(".tag")).map(t => t.innerText).join(" "),
      Queued: txt(r, "td[data-queued-bytes]"), Refusals: txt(r, "td.refusals"), Error: txt(r, "td.error"),
    })),
  };
})()`

// The status page in a real browser (Debian's Chromium, headless): podtail
// collects two tenants' containers and files, and a third tenant's output
// that Loki refuses (over its limits). The page, refreshing itself, shows
// each source's row with its labels and a lag that falls to zero, the
// refused tenant's error (Loki's own words) and its lag, and the filter by
// tenant and application narrows the rows. Screenshots go to bin/.
func TestStatusPageInBrowser(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "the page shows what the scheduler and the sink report; the readers' labels, positions and lag are tested per log driver by the other tests")
	began := time.Now()
	chromium := os.Getenv("PODTAIL_CHROMIUM")
	if chromium == "" {
		t.Fatal("PODTAIL_CHROMIUM is not set: run through e2e/testbed/testbed.sh, which installs Debian's chromium")
	}
	if err := os.MkdirAll(shotsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PODTAIL_SERVER_STATUS", "true") // server.status, for the podtail started below
	p := startPodtail(t, podtailOpts{})

	a, b, over := name("status-a"), name("status-b"), testbed.OverLimitTenant
	const lines = 300
	shopLogs, blogLogs := appDir(t, a, "shop"), appDir(t, b, "blog")
	zap := fmt.Sprintf("-n %d -rate 100 -hold 10m -echo ", lines)
	runZapApp(t, name("status", "shop"), a, "shop", "v1", shopLogs, zap+"shop-")
	runZapApp(t, name("status", "blog"), b, "blog", "v2", blogLogs, zap+"blog-")
	runContainer(t, name("status", "cart"), a, "cart", "v7", fmt.Sprintf("sleep 1; seq 1 %d; sleep 600", lines))
	runContainer(t, name("status", "spam"), over, "spam", "v1", "sleep 1; seq 1 50; sleep 600")

	ctx, cancel := browser(t, chromium)
	defer cancel()
	page := "http://" + p.listen + "/status"
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	view := func() pageView {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	shot := func(file string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(shotsDir, file)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(path)
		t.Logf("screenshot: %s", abs)
	}
	// waitView waits, without reloading (the page refreshes itself), until
	// cond holds for what the page shows.
	waitView := func(timeout time.Duration, what string, cond func(pageView) bool) pageView {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			v := view()
			if cond(v) {
				return v
			}
			if time.Now().After(deadline) {
				j, _ := json.MarshalIndent(v, "", "  ")
				shot("status-failed.png")
				t.Fatalf("timed out after %s waiting for the page to show %s; it shows:\n%s", timeout, what, j)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	driver := bedLogDriver(t)
	// What a person expects to see, per source: its labels and kind.
	type want struct{ tenant, kind, source, app, version, stream, driver string }
	wants := []want{
		{a, "container", name("status", "shop"), "shop", "v1", "stdout+stderr", driver},
		{a, "file", fmt.Sprintf("%s_shop_v1.log", a), "shop", "v1", "file", "–"},
		{a, "container", name("status", "cart"), "cart", "v7", "stdout+stderr", driver},
		{b, "container", name("status", "blog"), "blog", "v2", "stdout+stderr", driver},
		{b, "file", fmt.Sprintf("%s_blog_v2.log", b), "blog", "v2", "file", "–"},
		{over, "container", name("status", "spam"), "spam", "v1", "stdout+stderr", driver},
	}
	find := func(v pageView, w want) *pageRow {
		for i, r := range v.Rows {
			if r.Tenant == w.tenant && r.Kind == w.kind && r.Source == w.source {
				return &v.Rows[i]
			}
		}
		return nil
	}
	labelled := func(r *pageRow, w want) bool {
		return r != nil && r.App == w.app && r.Version == w.version && r.Stream == w.stream && r.Driver == w.driver
	}

	// Every source appears with its labels while the apps write.
	v := waitView(30*time.Second, "a row with its labels for each source", func(v pageView) bool {
		for _, w := range wants {
			if !labelled(find(v, w), w) {
				return false
			}
		}
		return true
	})
	shot("status-1-collecting.png")
	behind := 0
	for _, r := range v.Rows {
		if r.Lag != "0 B" {
			behind++
		}
	}
	t.Logf("while the apps write: %d of %d rows show a lag", behind, len(v.Rows))

	// The two tenants' lag falls to zero once the apps have written
	// everything and Loki holds it.
	waitCount(t, a, fmt.Sprintf(`{tenant=%q, application="shop", stream="file"}`, a), lines, time.Minute)
	waitCount(t, b, fmt.Sprintf(`{tenant=%q, application="blog", stream="file"}`, b), lines, time.Minute)
	waitCount(t, a, fmt.Sprintf(`{tenant=%q, application="cart"}`, a), lines, time.Minute)
	v = waitView(20*time.Second, "a lag of zero for tenants a and b's sources", func(v pageView) bool {
		for _, w := range wants[:5] {
			r := find(v, w)
			if r == nil || r.Lag != "0 B" || r.LagS != "0 s" || r.State != "reading" || r.Read == "0 B" || r.Acked != r.Read || r.Error != "" {
				return false
			}
		}
		return true
	})

	// The refused tenant: Loki's answer on its tenant row and its source's,
	// and a lag that does not fall.
	v = waitView(20*time.Second, "the refused tenant's error", func(v pageView) bool {
		r := find(v, wants[5])
		for _, tn := range v.Tenants {
			if tn.Tenant == over {
				return strings.Contains(tn.Tags, "refused") && strings.Contains(tn.Error, "HTTP 429") &&
					strings.Contains(strings.ToLower(tn.Error), "ingestion rate limit exceeded") && strings.Contains(tn.Refusals, "429") &&
					r != nil && strings.Contains(r.Error, "Loki refuses tenant "+over) && r.Lag != "0 B" && r.LagS != "0 s"
			}
		}
		return false
	})
	if v.Loki != "reachable" {
		t.Errorf("Loki shown as %q, want reachable", v.Loki)
	}
	for _, tn := range v.Tenants {
		if (tn.Tenant == a || tn.Tenant == b) && (tn.Error != "" || tn.Refusals != "none") {
			t.Errorf("tenant %s shows refusals %q, error %q", tn.Tenant, tn.Refusals, tn.Error)
		}
	}
	shot("status-2-caught-up-and-refused.png")

	// The filter: a tenant, then one of its applications, as a person
	// picks them; the address follows, and serves the same view.
	choose := func(id, value string) {
		t.Helper()
		js := fmt.Sprintf(`(() => { const s = document.getElementById(%q); s.value = %q; s.dispatchEvent(new Event("change", {bubbles: true})); return s.value; })()`, id, value)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil || got != value {
			t.Fatalf("choosing %s=%q: got %q, %v", id, value, got, err)
		}
	}
	only := func(v pageView, tenant, app string, n int) bool {
		if len(v.Rows) != n {
			return false
		}
		for _, r := range v.Rows {
			if r.Tenant != tenant || (app != "" && r.App != app) {
				return false
			}
		}
		for _, tn := range v.Tenants {
			if tn.Tenant != tenant {
				return false
			}
		}
		return true
	}
	choose("f-tenant", a)
	v = waitView(10*time.Second, "only tenant a's three sources", func(v pageView) bool { return only(v, a, "", 3) })
	if !strings.Contains(v.URL, "tenant="+a) {
		t.Errorf("the address is %s after choosing tenant %s", v.URL, a)
	}
	choose("f-app", "shop")
	v = waitView(10*time.Second, "only tenant a's shop (its output and its file)", func(v pageView) bool { return only(v, a, "shop", 2) })
	shot("status-3-filtered.png")
	if err := chromedp.Do(ctx, chromedp.Navigate(page+"?tenant="+b+"&app=blog")); err != nil {
		t.Fatal(err)
	}
	v = waitView(5*time.Second, "only tenant b's blog, from the address", func(v pageView) bool { return only(v, b, "blog", 2) && v.Tenant == b && v.App == "blog" })

	// The same data for scripts: /status.json, and podtail targets --from.
	var rep struct {
		Sources []struct {
			Tenant, Application string
			LagBytes            int64 `json:"lag_bytes"`
		}
	}
	resp, err := http.Get(page + ".json?tenant=" + a)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || len(rep.Sources) != 3 {
		t.Errorf("status.json?tenant=%s: %d sources, %v", a, len(rep.Sources), err)
	}
	out, err := exec.Command(bed.podtail, "targets", "--from", p.listen).CombinedOutput()
	if err != nil || !strings.Contains(string(out), name("status", "blog")) || !strings.Contains(string(out), "Loki refuses its pushes") {
		t.Errorf("podtail targets --from %s: %v\n%s", p.listen, err, out)
	}
	t.Logf("browser test: %s in all (podtail, 4 containers, Chromium)", time.Since(began).Round(100*time.Millisecond))
}

// browser starts Debian's Chromium, headless, with the flags it needs here
// as root: no sandbox, no GPU, nothing fetched from the network in the
// background, a profile of its own.
func browser(t *testing.T, exe string) (context.Context, context.CancelFunc) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1500, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelTime := context.WithTimeout(ctx, 3*time.Minute)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancelTime()
		cancelCtx()
		cancelAlloc()
		t.Fatalf("starting %s: %v", exe, err)
	}
	return ctx, func() { cancelTime(); cancelCtx(); cancelAlloc() }
}
