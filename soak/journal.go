package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// journalCheck tells, in the journald profile, the lines podtail lost from
// those journald never stored: journald drops a service's lines beyond its
// rate limit (RateLimitBurst per RateLimitIntervalSec, per cgroup, and
// every container's conmon shares one here, with whatever else runs on this
// machine), and those are missing from Loki through no fault of podtail's.
type journalCheck struct {
	Err        error
	InJournal  int // missing lines the journal holds: podtail's
	NotJournal int // missing lines the journal lacks though it holds others of their writer: journald's
	// Gone counts missing lines of writers the journal holds nothing of
	// any more: rotated and vacuumed away (anything on the machine may ask
	// journald to), so nobody can tell; counted as podtail's.
	Gone       int
	Suppressed string
}

// checkJournal reads the soak's containers' entries from the journal since
// since and sorts res's missing container lines into the two kinds.
func checkJournal(res Result, run string, since time.Time) *journalCheck {
	jc := &journalCheck{}
	held := map[Key]map[int]bool{}
	cmd := exec.Command("journalctl", "--no-pager", "-o", "json", "--output-fields=CONTAINER_NAME,MESSAGE,PRIORITY",
		fmt.Sprintf("--since=@%d", since.Unix()))
	out, err := cmd.StdoutPipe()
	if err != nil {
		jc.Err = err
		return jc
	}
	if err := cmd.Start(); err != nil {
		jc.Err = err
		return jc
	}
	prefix := "soak-" + run + "-"
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Name     string `json:"CONTAINER_NAME"`
			Message  any    `json:"MESSAGE"`
			Priority string `json:"PRIORITY"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || !strings.HasPrefix(e.Name, prefix) {
			continue
		}
		msg, ok := e.Message.(string)
		if !ok {
			continue
		}
		stream := "stdout"
		if e.Priority == "3" {
			stream = "stderr"
		}
		k, seq, ok := parseLine("", map[string]string{"stream": stream}, strings.TrimSuffix(msg, "\n"))
		if !ok {
			continue
		}
		if held[k] == nil {
			held[k] = map[int]bool{}
		}
		held[k][seq] = true
	}
	if err := cmd.Wait(); err != nil {
		jc.Err = fmt.Errorf("journalctl: %w", err)
	}
	for _, s := range res.Failed() {
		if s.Key.Stream == "file" {
			continue
		}
		h := held[Key{Stream: s.Key.Stream, Name: s.Key.Name}]
		for _, g := range s.Gaps {
			for seq := g.First; seq <= g.Last; seq++ {
				if len(h) == 0 {
					jc.Gone++
				} else if h[seq] {
					jc.InJournal++
				} else {
					jc.NotJournal++
				}
			}
		}
	}
	supp, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", fmt.Sprintf("--since=@%d", since.Unix()), "-g", "Suppressed").Output()
	jc.Suppressed = strings.TrimSpace(string(supp))
	return jc
}
