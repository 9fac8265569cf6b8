package main

import (
	"bufio"
	"encoding/json"
	"os"
	"sort"
	"strconv"
	"strings"
)

// diagnosis is what podtail's own log says about the run: how late
// Podman's events reached it, which containers it learned of only after
// their log was gone, and its warnings and errors by message.
type diagnosis struct {
	EventAges []float64       // seconds, of this run's containers' events, sorted
	Gone      map[string]bool // short names of containers whose log was gone when podtail came to read it
	Messages  map[string]int  // "level: msg" → count, for warn and error
}

// goneMsg is what podtail logs when it learns of a container after its
// k8s-file log was deleted (and no catcher held it).
const goneMsg = "container gone before its log could be opened"

// diagnose reads podtail's log (JSON lines; the soak's own marker lines
// are not JSON and are skipped).
func diagnose(path, run string) diagnosis {
	d := diagnosis{Gone: map[string]bool{}, Messages: map[string]int{}}
	f, err := os.Open(path)
	if err != nil {
		return d
	}
	defer f.Close()
	prefix := "soak-" + run + "-"
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Level     string   `json:"level"`
			Msg       string   `json:"msg"`
			Container string   `json:"container"`
			Age       *float64 `json:"age"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		mine := strings.HasPrefix(e.Container, prefix)
		switch {
		case e.Msg == "event" && e.Age != nil && mine:
			d.EventAges = append(d.EventAges, *e.Age)
		case strings.HasPrefix(e.Msg, goneMsg) && mine:
			d.Gone[strings.TrimPrefix(e.Container, prefix)] = true
		}
		if e.Level == "warn" || e.Level == "error" {
			d.Messages[e.Level+": "+e.Msg]++
		}
	}
	sort.Float64s(d.EventAges)
	return d
}

// goneLines counts the missing container lines of writers podtail learned
// of only after their log was gone, and the writers.
func (d diagnosis) goneLines(res Result) (lines, writers int) {
	for _, s := range res.Failed() {
		if s.Key.Stream != "file" && d.Gone[s.Key.Name] && s.Missing > 0 {
			lines += s.Missing
			writers++
		}
	}
	return lines, writers
}

// topMessages lists the n commonest warnings and errors.
func (d diagnosis) topMessages(n int) []string {
	type mc struct {
		m string
		c int
	}
	var v []mc
	for m, c := range d.Messages {
		v = append(v, mc{m, c})
	}
	sort.Slice(v, func(i, j int) bool { return v[i].c > v[j].c || (v[i].c == v[j].c && v[i].m < v[j].m) })
	var out []string
	for i, x := range v {
		if i == n {
			break
		}
		out = append(out, strings.TrimSpace(strings.ReplaceAll(x.m, "|", "/"))+" ×"+strconv.Itoa(x.c))
	}
	return out
}
