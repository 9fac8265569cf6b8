package e2e

// What every line carries about where it comes from: static labels
// (static_labels) on every stream, and the source's container, image, pod
// and host, the zap caller and request ids as Loki structured metadata,
// read back with LogQL.

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/podtail/podtail/e2e/testbed"
)

// zapLevelCounts is how many lines of each level zaplog writes of n.
func zapLevelCounts(n int) map[string]int {
	c := map[string]int{}
	for i := 1; i <= n; i++ {
		switch {
		case i%10 == 0:
			c["error"]++
		case i%17 == 0:
			c["warn"]++
		case i%13 == 0:
			c["debug"]++
		default:
			c["info"]++
		}
	}
	return c
}

// The zap app in a container in a pod (stdout and its log file) and a
// container in no pod, with static_labels {host, cluster} and request_id
// made structured metadata by a structured_metadata stage after zap:
// every stream has the host and cluster labels; `| request_id="…"` and
// `| caller=~"…"` return the lines they name, and grouping by caller gives
// one caller per level with that level's count; `| container=`, `| image=`
// and `| pod=` hold for every line of the pod's container, output and file
// alike, and a container in no pod has no pod. Runs in both profiles: the
// metadata comes with each reader's entries, and the pod's name from
// Podman's API.
func TestStaticLabelsAndStructuredMetadata(t *testing.T) {
	needBed(t)
	tenant, host := name("ctx"), name("e2e-host")
	startPodtail(t, podtailOpts{extra: fmt.Sprintf(`static_labels: {host: %s, cluster: ci}
pipeline:
  files:
    - type: zap
    - type: structured_metadata
      request_id: request_id
`, host)})
	pod, inPod, noPod := name("ctxpod"), name("ctx-inpod"), name("ctx-nopod")
	podman(t, "pod", "create", "--name", pod)
	t.Cleanup(func() { _ = exec.Command("podman", "pod", "rm", "-f", "-t", "0", pod).Run() })
	const n = 2000
	logs := appDir(t, tenant, "ctx")
	runContainer(t, inPod, tenant, "ctx", "v1",
		fmt.Sprintf("exec /zaplog -file /app/workplace/logs/%s_ctx_v1.log -n %d -echo ctx- -hold 5m", tenant, n),
		"--pod", pod, "-v", bed.zaplog+":/zaplog:ro", "-v", logs+":/app/workplace/logs")
	runContainer(t, noPod, tenant, "nopod", "v1", printLoop("nopod", 100, 0, false))

	file := fmt.Sprintf(`{tenant=%q, application="ctx", stream="file"}`, tenant)
	out := fmt.Sprintf(`{tenant=%q, application="ctx", stream="stdout"}`, tenant)
	waitCount(t, tenant, file, n, 60*time.Second)
	waitCount(t, tenant, out, n, 30*time.Second)
	waitCount(t, tenant, fmt.Sprintf(`{tenant=%q, application="nopod"}`, tenant), 100, 30*time.Second)
	total := 2*n + 100

	// Static labels on every stream.
	groups, err := testbed.CountBy(bed.lokiURL, tenant, fmt.Sprintf(`{tenant=%q}`, tenant), "host, cluster")
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Labels["host"] != host || groups[0].Labels["cluster"] != "ci" || groups[0].N != total {
		t.Errorf("by host and cluster: %v, want every one of %d lines under host=%s, cluster=ci", groups, total, host)
	}

	// Request ids (the structured_metadata stage) and callers (zap's).
	for q, want := range map[string]int{
		file + ` | request_id="req-00000042"`:                                       1,
		file + ` | request_id=~"req-000001[0-9][0-9]"`:                              100,
		file + ` | request_id=""`:                                                   0,
		file + ` | caller=~"zaplog/main\\.go:[0-9]+"`:                               n,
		fmt.Sprintf(`{tenant=%q, log_level="error"} | caller=~"zaplog/.*"`, tenant): zapLevelCounts(n)["error"],
	} {
		if got := lokiCount(t, tenant, q); got != want {
			t.Errorf("%s: %d, want %d", q, got, want)
		}
	}
	if ss := query(t, tenant, file+` | request_id="req-00000042"`); len(ss) != 1 || len(ss[0].Lines) != 1 || !regexp.MustCompile(`"n":42,`).MatchString(ss[0].Lines[0]) {
		t.Errorf(`| request_id="req-00000042": %v, want the line n=42`, ss)
	}
	byCaller, err := testbed.CountBy(bed.lokiURL, tenant, file, "caller")
	if err != nil {
		t.Fatal(err)
	}
	var gotCounts, wantCounts []int
	for _, g := range byCaller {
		gotCounts = append(gotCounts, g.N)
	}
	for _, c := range zapLevelCounts(n) {
		wantCounts = append(wantCounts, c)
	}
	slices.Sort(gotCounts)
	slices.Sort(wantCounts)
	if fmt.Sprint(gotCounts) != fmt.Sprint(wantCounts) {
		t.Errorf("lines by caller: %v, want one caller per level with its count %v", byCaller, wantCounts)
	}

	// The source's container, image and pod, on output and files alike.
	for _, sel := range []string{out, file} {
		q := fmt.Sprintf(`%s | container=%q | image=%q | pod=%q`, sel, inPod, bed.image, pod)
		if got := lokiCount(t, tenant, q); got != n {
			t.Errorf("%s: %d, want %d", q, got, n)
		}
	}
	for q, want := range map[string]int{
		fmt.Sprintf(`{tenant=%q, application="nopod"} | container=%q | pod=""`, tenant, noPod): 100,
		fmt.Sprintf(`{tenant=%q} | container=""`, tenant):                                      0,
	} {
		if got := lokiCount(t, tenant, q); got != want {
			t.Errorf("%s: %d, want %d", q, got, want)
		}
	}
	// A static label named host says it on every stream: the host metadata
	// is left out (Loki would rename it host_extracted in queries, and
	// | host="..." would filter on the label only).
	hostname, _ := os.Hostname()
	if n := lokiCount(t, tenant, fmt.Sprintf(`{tenant=%q} | host_extracted=%q`, tenant, hostname)); n != 0 {
		t.Errorf("%d lines carry host metadata beside the host label", n)
	}
}
