package e2e

// Multi-line entries on container output: a Go program's panic on stderr
// (the runtime's own trace, every goroutine's stack) joined into one entry
// by the multiline stage of pipeline.container, per stream, on k8s-file and
// journald containers alike (both profiles).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// panicPipeline joins container output per stream: a line that starts a
// JSON object, "panic: " or "fatal error: " starts an entry, any other line
// belongs to the entry before it (the seed's apps log zap JSON, and the Go
// runtime writes its traces to stderr).
const panicPipeline = `pipeline:
  container:
    - type: multiline
      first_line: '^(\{|panic: |fatal error: )'
      max_wait: 3s
    - type: json_auto
`

// runPanicker runs e2e/apps/panicker with args in a container of tenant.
func runPanicker(t *testing.T, cname, tenant, args string) string {
	t.Helper()
	return runContainer(t, cname, tenant, "panicker", "v1", "exec /panicker "+args, "-v", bed.panicker+":/panicker:ro")
}

// containerOutput is what container id wrote on stdout and on stderr, as
// `podman logs` gives it back.
func containerOutput(t *testing.T, id string) (stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command("podman", "logs", id)
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman logs %s: %v\n%s", id, err, e.String())
	}
	return o.String(), e.String()
}

// waitExited waits for container id to exit.
func waitExited(t *testing.T, id string) {
	t.Helper()
	eventually(t, 60*time.Second, "container "+id[:12]+" to exit", func() bool {
		return podman(t, "inspect", "--format", "{{.State.Status}}", id) == "exited"
	})
}

// checkPanicInLoki checks what Loki holds of a panicker container that has
// exited: its stderr, the whole trace, as one entry, byte for byte what the
// container wrote (less the last newline), and on stdout each of the JSON
// lines it printed once, as separate entries.
func checkPanicInLoki(t *testing.T, tenant, id string, goroutines int) {
	t.Helper()
	stdout, stderr := containerOutput(t, id)
	trace := strings.TrimSuffix(stderr, "\n")
	if !strings.HasPrefix(trace, "panic: assignment to entry in nil map\n\ngoroutine 1 [running]:\nmain.main()\n") ||
		strings.Count(trace, "\ngoroutine ") != 1+goroutines {
		t.Fatalf("the container's stderr is not the panic the test expects:\n%s", stderr)
	}
	outLines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	outSel := fmt.Sprintf(`{tenant=%q, application="panicker", stream="stdout"}`, tenant)
	errSel := fmt.Sprintf(`{tenant=%q, application="panicker", stream="stderr"}`, tenant)
	waitCount(t, tenant, outSel, len(outLines), 30*time.Second)
	waitCount(t, tenant, errSel, 1, 30*time.Second)

	got := lines(query(t, tenant, errSel))
	if len(got) != 1 || got[0] != trace {
		t.Fatalf("stderr in Loki: %d entries, want the %d-line trace as one:\n%s\nwant:\n%s",
			len(got), strings.Count(trace, "\n")+1, strings.Join(got, "\n-----\n"), trace)
	}
	// The README's query for panics finds it once.
	if got := count(t, tenant, fmt.Sprintf(`{tenant=%q} |= "panic:"`, tenant)); got != 1 {
		t.Errorf(`{tenant} |= "panic:" finds %d entries, want 1`, got)
	}
	// stdout: each line once, in the order written, and each its own
	// entry with the level json_auto found in it.
	inLoki := lines(query(t, tenant, outSel))
	if strings.Join(inLoki, "\n") != strings.Join(outLines, "\n") {
		t.Fatalf("stdout in Loki (%d entries) is not the %d lines written, each once, in order:\n%s",
			len(inLoki), len(outLines), tail(strings.Join(inLoki, "\n"), 10))
	}
	for _, l := range outLines {
		var j map[string]any
		if json.Unmarshal([]byte(l), &j) != nil {
			t.Fatalf("a stdout line that is not the panicker's JSON: %q", l)
		}
	}
	if got := count(t, tenant, fmt.Sprintf(`{tenant=%q, stream="stdout", log_level="info"}`, tenant)); got != len(outLines) {
		t.Errorf(`stdout with log_level="info": %d, want %d`, got, len(outLines))
	}
}

// A Go program dies of a real panic: Loki holds its trace (the panic
// message and four goroutines' stacks, 23 lines with blank ones between)
// as one entry on stderr, exactly as written, while its JSON lines on
// stdout, joined by the same stage, stay one entry each.
func TestGoPanicOneEntry(t *testing.T) {
	needBed(t)
	startPodtail(t, podtailOpts{extra: panicPipeline})
	tenant := name("panic")
	id := runPanicker(t, name("panic"), tenant, "-lines 20 -goroutines 3")
	waitExited(t, id)
	checkPanicInLoki(t, tenant, id, 3)
}

// podtail is SIGKILLed while the panicker relays its trace a line at a time
// (150 ms apart, each trace line followed by a JSON line on stdout), and
// started again once the container has exited: the panic is in Loki once,
// whole, and every stdout line once, including those written while the
// trace was being joined, which the first podtail delivered and the second
// must not send again when it reads the trace again from its first line.
func TestGoPanicKilledMidTrace(t *testing.T) {
	needBed(t)
	dataDir := t.TempDir()
	p1 := startPodtail(t, podtailOpts{dataDir: dataDir, extra: panicPipeline})
	tenant := name("panickill")
	id := runPanicker(t, name("panickill"), tenant, "-lines 200 -goroutines 3 -line-delay 150ms -interleave")
	eventually(t, 30*time.Second, "half of the trace written", func() bool {
		_, stderr := containerOutput(t, id)
		return strings.Count(stderr, "\n") >= 10
	})
	// The first podtail must have delivered stdout lines written after the
	// trace's first line, which the second must then not repeat.
	interleaved := fmt.Sprintf(`{tenant=%q, stream="stdout"} |= "trace line relayed"`, tenant)
	eventually(t, 10*time.Second, "stdout lines written during the trace in Loki", func() bool { return count(t, tenant, interleaved) >= 5 })
	p1.signal(syscall.SIGKILL)
	<-p1.done
	_, stderr := containerOutput(t, id)
	written := strings.Count(stderr, "\n")
	if podman(t, "inspect", "--format", "{{.State.Status}}", id) != "running" || written >= 23 {
		t.Fatalf("the trace was written whole (%d lines) before podtail was killed; the test wants it half written", written)
	}
	shipped := count(t, tenant, fmt.Sprintf(`{tenant=%q, stream="stderr"}`, tenant))
	before := count(t, tenant, interleaved)
	if shipped != 0 {
		t.Errorf("%d stderr entries in Loki while the trace was being written; the joiner holds it until it is complete", shipped)
	}
	waitExited(t, id)

	startPodtail(t, podtailOpts{dataDir: dataDir, extra: panicPipeline})
	checkPanicInLoki(t, tenant, id, 3)
	t.Logf("killed with %d of 23 trace lines written and %d stdout lines written during the trace in Loki; after the restart the trace once, whole, and every stdout line once", written, before)
}
