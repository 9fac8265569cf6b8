package e2e

// Issue 19: several podtail agents into Loki in its simple scalable form
// (write, read and backend processes) behind an nginx gateway that maps
// each tenant's credentials to its X-Scope-OrgID.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// distFor is how long the agents' apps write: PODTAIL_E2E_DIST_FOR, 45 s by
// default (make test); the 2 minutes with PODTAIL_E2E_DIST_FOR=2m.
func distFor(t *testing.T) time.Duration {
	if s := os.Getenv("PODTAIL_E2E_DIST_FOR"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 20*time.Second {
			t.Fatalf("PODTAIL_E2E_DIST_FOR=%q: want a duration of at least 20s", s)
		}
		return d
	}
	return 45 * time.Second
}

// distRate is lines/s per file (static writers) and per container (its
// stdout and its file each): 4 agents × 2 tenants × 250 = 2,000 lines/s.
const distRate = 125

// tenantWriter writes one tenant's two static files of one agent, zap lines
// at distRate each, a tenth of a second's lines at a time, and remembers
// when how many were written, so that an acknowledged count tells the age
// of the oldest line not yet acknowledged.
type tenantWriter struct {
	files []string
	total int // lines per file
	mu    sync.Mutex
	hist  []written
}

type written struct {
	at time.Time
	n  int // lines written by then, both files
}

func (w *tenantWriter) run(t *testing.T, done *sync.WaitGroup) {
	defer done.Done()
	fs := make([]*os.File, len(w.files))
	for i, p := range w.files {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		fs[i] = f
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 0; n < w.total; {
		<-tick.C
		k := min(distRate/10, w.total-n)
		for _, f := range fs {
			var b strings.Builder
			for i := n + 1; i <= n+k; i++ {
				now := time.Now()
				fmt.Fprintf(&b, `{"level":"info","ts":%d.%06d,"caller":"dist/writer.go:1","msg":"request handled","n":%d,"request_id":"req-%08d","path":"/api/v1/orders"}`+"\n",
					now.Unix(), now.Nanosecond()/1000, i, i)
			}
			if _, err := f.WriteString(b.String()); err != nil {
				t.Error(err)
				return
			}
		}
		n += k
		w.mu.Lock()
		w.hist = append(w.hist, written{time.Now(), n * len(fs)})
		w.mu.Unlock()
	}
}

// lag is how long ago the oldest line not among the first acked was written.
func (w *tenantWriter) lag(acked int, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := sort.Search(len(w.hist), func(i int) bool { return w.hist[i].n > acked })
	if i == len(w.hist) {
		return 0
	}
	return now.Sub(w.hist[i].at)
}

// distAgent is one podtail: static files (two per tenant) or containers
// (one zap app per tenant: stdout and its file), never both, so that its
// acknowledged counts measure its writers' lag.
type distAgent struct {
	name    string
	p       *podtailProc
	static  bool
	writers map[string]*tenantWriter // static agents, by tenant
	want    map[string]int           // lines per tenant
}

// gw asks the gateway with user's basic auth and an optional X-Scope-OrgID.
func gw(t *testing.T, method, url, user, password, org string) int {
	t.Helper()
	// A line without a tenant label: the counts below leave it out.
	body := fmt.Sprintf(`{"streams":[{"stream":{"probe":"gateway"},"values":[["%d","probe"]]}]}`, time.Now().UnixNano())
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	if org != "" {
		req.Header.Set("X-Scope-OrgID", org)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// wsTail opens /loki/api/v1/tail through the gateway as a WebSocket and
// returns the status line of the answer.
func wsTail(t *testing.T, gateway, user, password, org, query string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(gateway, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, _ := http.NewRequest(http.MethodGet, gateway+"/loki/api/v1/tail?query="+query, nil)
	req.SetBasicAuth(user, password)
	if org != "" {
		req.Header.Set("X-Scope-OrgID", org)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// Four agents × two tenants (static files and containers) push ~2,000
// lines/s through the gateway while one tenant is held to a tiny ingestion
// rate for half the run, the write process is SIGKILLed and restarted, and
// the gateway restarted: every line is in Loki once, under its own tenant
// only; the limited tenant's lines come late but complete, the other's are
// acknowledged within 2 s meanwhile; neither tenant's credentials push or
// read as the other.
func TestDistributedLokiAgents(t *testing.T) {
	needBed(t)
	sameInBothProfiles(t, "Loki's side and static files; the containers' log driver is not the subject")
	runFor := distFor(t)
	fast, slow := name("dist-fast"), name("dist-slow")
	tenants := []string{fast, slow}
	users := []testbed.GatewayUser{
		{User: "agent-fast", Password: "fast-" + bed.runID, Tenant: fast},
		{User: "agent-slow", Password: "slow-" + bed.runID, Tenant: slow},
	}
	d, err := testbed.StartDistributedLoki(filepath.Join(t.TempDir(), "loki"), users, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			for _, f := range []string{"write.log", "read.log", "backend.log", "gateway/error.log"} {
				b, _ := os.ReadFile(filepath.Join(d.Dir, f))
				t.Logf("%s:\n%s", f, tail(string(b), 20))
			}
		}
	})
	g := d.Gateway.URL

	// The gateway: a credential is one tenant, and no other.
	push, queryPath := g+"/loki/api/v1/push", g+"/loki/api/v1/query_range?query=%7Btenant%3D~%22.%2B%22%7D"
	for _, c := range []struct {
		what, method, url, user, pw, org string
		want                             int
	}{
		{"push without credentials", "POST", push, "", "", fast, 401},
		{"push with a wrong password", "POST", push, "agent-fast", "nope", fast, 401},
		{"push as the other tenant", "POST", push, "agent-fast", users[0].Password, slow, 403},
		{"query as the other tenant", "GET", queryPath, "agent-slow", users[1].Password, fast, 403},
		{"push as its own tenant", "POST", push, "agent-fast", users[0].Password, fast, 204},
		{"push, the gateway naming the tenant", "POST", push, "agent-slow", users[1].Password, "", 204},
		{"anything else", "GET", g + "/config", "agent-fast", users[0].Password, "", 404},
	} {
		if got := gw(t, c.method, c.url, c.user, c.pw, c.org); got != c.want {
			t.Errorf("gateway: %s: %d, want %d", c.what, got, c.want)
		}
	}
	q := "%7Btenant%3D%22" + fast + "%22%7D"
	if got := wsTail(t, g, "agent-fast", users[0].Password, "", q); !strings.Contains(got, " 101 ") {
		t.Errorf("gateway: tail (WebSocket) as its own tenant: %q, want 101 Switching Protocols", got)
	}
	if got := wsTail(t, g, "agent-fast", users[0].Password, slow, q); !strings.Contains(got, " 403 ") {
		t.Errorf("gateway: tail as the other tenant: %q, want 403", got)
	}

	// The agents: 0 and 1 tail static files, 2 and 3 collect containers.
	secrets := t.TempDir()
	var auth strings.Builder
	auth.WriteString("batch_size: 256KiB\ntenant_auth:\n")
	for _, u := range users {
		f := filepath.Join(secrets, u.User)
		if err := os.WriteFile(f, []byte(u.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&auth, "  - tenant: %s\n    basic_auth: {username: %s, password_file: %s}\n", u.Tenant, u.User, f)
	}
	perFile := int(runFor.Seconds()) * distRate
	var agents []*distAgent
	var writing sync.WaitGroup
	for i := 0; i < 4; i++ {
		a := &distAgent{name: fmt.Sprintf("agent%d-%s", i, bed.runID), static: i < 2, writers: map[string]*tenantWriter{}, want: map[string]int{}}
		o := podtailOpts{lokiURL: g, lokiExtra: auth.String()}
		if a.static {
			root := t.TempDir()
			for _, tenant := range tenants {
				w := &tenantWriter{total: perFile}
				for j := 0; j < 2; j++ {
					app := fmt.Sprintf("f%d%d", i, j)
					dir := filepath.Join(root, "namespace", tenant, app, "workplace", "logs")
					if err := os.MkdirAll(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					f := filepath.Join(dir, fmt.Sprintf("%s_%s_v1.log", tenant, app))
					if err := os.WriteFile(f, nil, 0o644); err != nil {
						t.Fatal(err)
					}
					w.files = append(w.files, f)
				}
				a.writers[tenant], a.want[tenant] = w, 2*perFile
			}
			o.noPodman, o.socket = true, "unix:///nonexistent/podman.sock"
			o.extra = fmt.Sprintf("files:\n  static:\n    - glob: %s/namespace/*/*/workplace/logs\n", root)
		} else {
			for _, tenant := range tenants {
				a.want[tenant] = 2 * perFile
			}
			o.extra = fmt.Sprintf("discovery:\n  select:\n    - {action: keep, source: \"label:podtail_agent\", regex: %q}\n", a.name)
		}
		a.p = startPodtail(t, o)
		agents = append(agents, a)
	}

	start := time.Now()
	for i, a := range agents {
		if a.static {
			for _, w := range a.writers {
				writing.Add(1)
				go w.run(t, &writing)
			}
			continue
		}
		for _, tenant := range tenants {
			app := fmt.Sprintf("c%d", i)
			file := fmt.Sprintf("/app/workplace/logs/%s_%s_v1.log", tenant, app)
			runContainer(t, name(tenant[:9], app), tenant, app, "v1",
				fmt.Sprintf("sleep 1; exec /zaplog -file %s -n %d -rate %d -echo w- -hold 30m", file, perFile, distRate),
				"--label", "podtail_agent="+a.name, "-v", bed.zaplog+":/zaplog:ro", "-v", appDir(t, tenant, app)+":/app/workplace/logs")
		}
	}
	at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }
	acked := func(a *distAgent, tenant string) int {
		return int(a.p.metric("podtail_loki_entries_sent_total", "tenant", tenant))
	}

	// The slow tenant over its ingestion rate for half the run: 50 KB/s
	// against the ~150 KB/s it writes. Meanwhile the age of each tenant's
	// oldest unacknowledged line is sampled on the static agents, whose
	// writers know when they wrote each line.
	limitFrom, limitFor := 5*time.Second, runFor/2
	at(limitFrom)
	if err := d.SetOverrides([]byte(fmt.Sprintf("overrides:\n  %s:\n    ingestion_rate_mb: 0.05\n    ingestion_burst_size_mb: 0.3\n", slow))); err != nil {
		t.Fatal(err)
	}
	lagMax := map[string]time.Duration{}
	for time.Since(start) < limitFrom+limitFor {
		time.Sleep(250 * time.Millisecond)
		if time.Since(start) < limitFrom+2*time.Second {
			continue // Loki reads the overrides within a second
		}
		for _, a := range agents[:2] {
			for tenant, w := range a.writers {
				lagMax[tenant] = max(lagMax[tenant], w.lag(acked(a, tenant), time.Now()))
			}
		}
	}
	refused := sumMetric(agents, "podtail_loki_push_retries_total", "tenant", slow, "reason", "429")
	if err := d.SetOverrides([]byte("overrides: {}\n")); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s over its ingestion rate for %s: %.0f pushes answered 429; oldest unacknowledged line at most %s old (%s: %s)",
		slow, limitFor, refused, lagMax[slow].Round(10*time.Millisecond), fast, lagMax[fast].Round(10*time.Millisecond))
	if refused == 0 {
		t.Errorf("%s was never refused (429): the limit did not bite", slow)
	}
	if lagMax[fast] > 2*time.Second {
		t.Errorf("%s's lines waited up to %s for their acknowledgement while %s was over its limit; want within 2 s", fast, lagMax[fast], slow)
	}

	// The write process SIGKILLed (its WAL holds what it acknowledged) and
	// started again; then the gateway restarted.
	at(limitFrom + limitFor + 3*time.Second)
	d.Write.Kill()
	killed := time.Now()
	time.Sleep(time.Second)
	if err := d.Write.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("write process SIGKILLed, ready again after %s", time.Since(killed).Round(10*time.Millisecond))
	time.Sleep(5 * time.Second)
	d.Gateway.Stop()
	time.Sleep(time.Second)
	if err := d.Gateway.Start(); err != nil {
		t.Fatal(err)
	}
	t.Log("gateway restarted")

	writing.Wait()
	at(runFor + time.Second)
	finished := map[*distAgent]time.Duration{}
	eventually(t, 3*time.Minute, "every line acknowledged", func() bool {
		for _, a := range agents {
			if _, ok := finished[a]; ok {
				continue
			}
			all := true
			for tenant, n := range a.want {
				all = all && acked(a, tenant) >= n
			}
			if all {
				finished[a] = time.Since(start)
			}
		}
		return len(finished) == len(agents)
	})
	distReport(t, agents, finished, runFor)

	// Every line once, each tenant's only under its own X-Scope-OrgID
	// (asked of the read process directly).
	for _, tenant := range tenants {
		want := 0
		for _, a := range agents {
			want += a.want[tenant]
		}
		var n int
		var err error
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
			if n, err = testbed.Count(d.Read.URL, tenant, `{tenant=~".+"}`); err == nil && n >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Loki holds %d of its %d lines (%v)", tenant, n, want, err)
			}
		}
		groups, err := testbed.CountBy(d.Read.URL, tenant, `{tenant=~".+"}`, "tenant")
		if err != nil {
			t.Fatal(err)
		}
		if len(groups) != 1 || groups[0].Labels["tenant"] != tenant || groups[0].N != want {
			t.Errorf("%s's X-Scope-OrgID holds %v, want %d lines of %s only", tenant, groups, want, tenant)
		}
		for i, a := range agents {
			if a.static {
				for j := 0; j < 2; j++ {
					ss := queryAllDist(t, d, tenant, fmt.Sprintf(`{tenant=%q, application="f%d%d"}`, tenant, i, j))
					checkZapLines(t, ss, perFile, map[string]string{"version": "v1", "stream": "file"})
				}
				continue
			}
			sel := fmt.Sprintf(`{tenant=%q, application="c%d", stream=%%q}`, tenant, i)
			seqLines(t, lines(queryAllDist(t, d, tenant, fmt.Sprintf(sel, "stdout"))), "w-", perFile)
			checkZapLines(t, queryAllDist(t, d, tenant, fmt.Sprintf(sel, "file")), perFile, map[string]string{"version": "v1"})
		}
	}
	// One tenant's credentials read nothing of the other's, even asking by
	// its label: the gateway names the tenant.
	if got := gw(t, "GET", g+"/loki/api/v1/query?query=count_over_time(%7Btenant%3D%22"+slow+"%22%7D%5B1h%5D)", "agent-fast", users[0].Password, ""); got != 200 {
		t.Errorf("query through the gateway: %d", got)
	}
	if n, err := testbed.Count(d.Read.URL, fast, fmt.Sprintf(`{tenant=%q}`, slow)); err != nil || n != 0 {
		t.Errorf("%s's X-Scope-OrgID holds %d of %s's lines (%v)", fast, n, slow, err)
	}
}

func queryAllDist(t *testing.T, d *testbed.DistributedLoki, tenant, sel string) []stream {
	t.Helper()
	ss, err := testbed.QueryAll(d.Read.URL, tenant, sel)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func sumMetric(agents []*distAgent, name string, labels ...string) float64 {
	var s float64
	for _, a := range agents {
		s += a.p.metric(name, labels...)
	}
	return s
}

// distReport logs the run's figures: lines/s per agent, the p99 of 2xx
// pushes through the gateway, and what was absorbed.
func distReport(t *testing.T, agents []*distAgent, finished map[*distAgent]time.Duration, wrote time.Duration) {
	t.Helper()
	for _, a := range agents {
		n := 0
		for _, w := range a.want {
			n += w
		}
		kind := "containers"
		if a.static {
			kind = "static files"
		}
		t.Logf("%s (%s): %d lines, written at %.0f lines/s, all acknowledged %s after the first was written (%.0f lines/s)",
			a.name, kind, n, float64(n)/wrote.Seconds(), finished[a].Round(10*time.Millisecond), float64(n)/finished[a].Seconds())
	}
	// p99 of the 2xx pushes' durations, interpolated in the histogram's
	// bucket (Prometheus' default buckets) where it falls.
	les := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	total := sumMetric(agents, "podtail_loki_push_duration_seconds_count", "status", "204")
	p99 := "over 10s"
	lo, below := 0.0, 0.0
	for _, le := range les {
		in := sumMetric(agents, "podtail_loki_push_duration_seconds_bucket", "status", "204", "le", strconv.FormatFloat(le, 'g', -1, 64))
		if in >= 0.99*total {
			p99 = fmt.Sprintf("%.0f ms", 1000*(lo+(le-lo)*(0.99*total-below)/max(in-below, 1)))
			break
		}
		lo, below = le, in
	}
	t.Logf("pushes: %.0f answered 204, p99 %s, mean %.1f ms; retried: %.0f pushes (%.0f entries) after 429, %.0f after 5xx, %.0f after network errors; uncertain pushes checked: %.0f",
		total, p99, 1000*sumMetric(agents, "podtail_loki_push_duration_seconds_sum", "status", "204")/total,
		sumMetric(agents, "podtail_loki_push_retries_total", "reason", "429"),
		sumMetric(agents, "podtail_loki_entries_retried_total", "reason", "429"),
		sumMetric(agents, "podtail_loki_push_retries_total", "reason", "500")+sumMetric(agents, "podtail_loki_push_retries_total", "reason", "502")+
			sumMetric(agents, "podtail_loki_push_retries_total", "reason", "503"),
		sumMetric(agents, "podtail_loki_push_retries_total", "reason", "network"),
		sumMetric(agents, "podtail_loki_uncertain_pushes_total"))
	if dropped := sumMetric(agents, "podtail_loki_entries_dropped_total"); dropped != 0 {
		t.Errorf("%.0f entries dropped", dropped)
	}
}
