package e2e

// Choosing what is collected: discovery.select's keep and drop rules, and a
// pod's labels for the containers in it (discovery.pod_labels).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventDecision is one line of `podtail events --json`.
type eventDecision struct {
	Action, ID, Name, Pod, Tenant, Application, Version, Reason string
	Collect                                                     bool
}

// eventsProc is a running `podtail events --json` and what it printed.
type eventsProc struct {
	mu   sync.Mutex
	seen []eventDecision
	bad  []string
}

// followEvents runs `podtail events --json` with the configuration of a
// running podtail and returns once it follows Podman's events: a probe
// container is created (and removed again) until its event shows.
func followEvents(t *testing.T, cfgFile string) *eventsProc {
	t.Helper()
	cmd := exec.Command(bed.podtail, "events", "--json", "--config", cfgFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &eventsProc{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var d eventDecision
			e.mu.Lock()
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				e.bad = append(e.bad, sc.Text())
			} else {
				e.seen = append(e.seen, d)
			}
			e.mu.Unlock()
		}
	}()
	probe := name("sel-probe")
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		_ = exec.Command("podman", "rm", "-f", "-t", "0", probe).Run()
		if t.Failed() {
			t.Logf("podtail events stderr:\n%s", tail(stderr.String(), 20))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for e.find(probe, "") == nil {
		if time.Now().After(deadline) {
			t.Fatalf("podtail events showed no event of a probe container in 20s; stderr:\n%s", stderr.String())
		}
		_ = exec.Command("podman", "rm", "-f", "-t", "0", probe).Run()
		podman(t, "create", "--name", probe, bed.image, "true")
		for i := 0; i < 20 && e.find(probe, "") == nil; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return e
}

// find returns the last decision printed for the container named cname on
// action ("": any), or nil.
func (e *eventsProc) find(cname, action string) *eventDecision {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.seen) - 1; i >= 0; i-- {
		if d := e.seen[i]; d.Name == cname && (action == "" || d.Action == action) {
			return &d
		}
	}
	return nil
}

// wait waits for the decision on cname's action.
func (e *eventsProc) wait(t *testing.T, cname, action string) eventDecision {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("podtail events on %s of %s", action, cname), func() bool { return e.find(cname, action) != nil })
	return *e.find(cname, action)
}

// Two containers of one tenant, one of them named by a drop rule
// (discovery.select); a container of a tenant that a keep rule does not
// list; a container without labels of its own in a pod created with tenant,
// app and version labels. The dropped containers are not read at all (no
// line of theirs reaches Loki, none is counted as read) and `podtail events`
// and `podtail targets` name the rule that dropped each; the kept container
// and the pod's container ship every line once, the latter under the pod's
// labels. Runs in both profiles: a pod's labels come from Podman's API
// (pods/{id}/json), which differs between 4.3 and 5.8.
func TestSelectRulesAndPodLabels(t *testing.T) {
	needBed(t)
	tenant, podTenant, other := name("sel"), name("selpod"), name("selother")
	p := startPodtail(t, podtailOpts{extra: fmt.Sprintf(`discovery:
  select:
    - {action: drop, source: name, regex: "sel-noisy-.*"}
    - {action: keep, source: "label:tenant", regex: %q}
`, tenant+"|"+podTenant)})
	ev := followEvents(t, p.cfgFile)

	const n = 300
	noisy, otherName := name("sel-noisy"), name("sel-other")
	runContainer(t, noisy, tenant, "noisy", "v1", printLoop("noisy", n, 0, true))
	runContainer(t, otherName, other, "other", "v1", printLoop("other", n, 0, true))
	eventually(t, 30*time.Second, "the dropped containers to exit", func() bool {
		return podman(t, "inspect", "--format", "{{.State.Status}}", noisy) == "exited" &&
			podman(t, "inspect", "--format", "{{.State.Status}}", otherName) == "exited"
	})

	// The pod carries the labels; its container has none.
	pod, inPod := name("selpod"), name("sel-inpod")
	podman(t, "pod", "create", "--name", pod, "--label", "tenant="+podTenant, "--label", "app=podapp", "--label", "version=v3")
	t.Cleanup(func() { _ = exec.Command("podman", "pod", "rm", "-f", "-t", "0", pod).Run() })
	const podN = 500
	podman(t, "run", "-d", "--pod", pod, "--name", inPod, bed.image, "sh", "-c", printLoop("inpod", podN, 0, true))
	t.Cleanup(func() { _ = exec.Command("podman", "rm", "-f", "-t", "0", inPod).Run() })

	kept := name("sel-kept")
	runContainer(t, kept, tenant, "kept", "v1", printLoop("kept", n, 0, true))

	for st, tag := range map[string]string{"stdout": "out", "stderr": "err"} {
		sel := fmt.Sprintf(`{tenant=%q, application="kept", stream=%q}`, tenant, st)
		waitCount(t, tenant, sel, n, 30*time.Second)
		seqLines(t, lines(query(t, tenant, sel)), "kept-"+tag+"-", n)
		sel = fmt.Sprintf(`{tenant=%q, application="podapp", version="v3", stream=%q}`, podTenant, st)
		waitCount(t, podTenant, sel, podN, 30*time.Second)
		seqLines(t, lines(query(t, podTenant, sel)), "inpod-"+tag+"-", podN)
	}
	// The dropped containers had exited before the kept one started: had
	// either been read, its lines would have been counted by now.
	if got := count(t, tenant, fmt.Sprintf(`{tenant=%q}`, tenant)); got != 2*n {
		t.Errorf("tenant %s: %d lines in Loki, want the kept container's %d only", tenant, got, 2*n)
	}
	if got := count(t, other, fmt.Sprintf(`{tenant=%q}`, other)); got != 0 {
		t.Errorf("tenant %s, not kept: %d lines in Loki", other, got)
	}
	for tn, want := range map[string]float64{tenant: 2 * n, other: 0} {
		if got := p.metric("podtail_source_entries_read_total", "tenant", tn); got != want {
			t.Errorf("podtail_source_entries_read_total{tenant=%q} = %.0f, want %.0f", tn, got, want)
		}
	}

	// podtail events names the deciding rule.
	if d := ev.wait(t, noisy, "start"); d.Collect || !strings.Contains(d.Reason, `discovery.select[0] (drop, name "`+noisy+`" matches "sel-noisy-.*")`) {
		t.Errorf("events, dropped by name: %+v", d)
	}
	if d := ev.wait(t, otherName, "start"); d.Collect || !strings.Contains(d.Reason, "discovery.select[1] (keep, label:tenant \""+other+"\" does not match") {
		t.Errorf("events, not kept: %+v", d)
	}
	if d := ev.wait(t, inPod, "start"); !d.Collect || d.Tenant != podTenant || d.Application != "podapp" || d.Version != "v3" || d.Pod != pod {
		t.Errorf("events, container in a labelled pod: %+v", d)
	}
	if d := ev.wait(t, kept, "start"); !d.Collect || d.Tenant != tenant {
		t.Errorf("events, kept: %+v", d)
	}
	ev.mu.Lock()
	if len(ev.bad) > 0 {
		t.Errorf("podtail events printed lines that are not JSON: %q", ev.bad)
	}
	ev.mu.Unlock()

	// And podtail targets, for the containers as they are now.
	out, err := exec.Command(bed.podtail, "targets", "--config", p.cfgFile).CombinedOutput()
	if err != nil {
		t.Fatalf("podtail targets: %v\n%s", err, out)
	}
	want := map[string]string{
		noisy:     "skip: dropped by discovery.select[0] (drop, name",
		otherName: "skip: dropped by discovery.select[1] (keep, label:tenant",
		inPod:     fmt.Sprintf("collect tenant=%s application=podapp version=v3 pod=%s", podTenant, pod),
		kept:      fmt.Sprintf("collect tenant=%s application=kept version=v1 from", tenant),
	}
	for cname, w := range want {
		row := ""
		for l := range strings.Lines(string(out)) {
			if strings.HasPrefix(l, cname+" ") {
				row = l
			}
		}
		if !strings.Contains(row, w) {
			t.Errorf("podtail targets, %s: %q, want %q in it", cname, strings.TrimSpace(row), w)
		}
	}
}
