package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The man pages come from the commands: one per command, with its flags
// and examples, and the completion command among them.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	root := newRootCmd()
	root.SetArgs([]string{"man", "--dir", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	run, err := os.ReadFile(filepath.Join(dir, "podtail-run.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".TH \"PODTAIL\" \"1\"", "loki.url", "default http://127.0.0.1:3100", "SIGHUP", "EXAMPLE"} {
		if !strings.Contains(string(run), want) {
			t.Errorf("podtail-run.1 lacks %q", want)
		}
	}
	for _, page := range []string{"podtail.1", "podtail-events.1", "podtail-targets.1", "podtail-config-check.1", "podtail-completion-bash.1"} {
		if _, err := os.Stat(filepath.Join(dir, page)); err != nil {
			t.Errorf("no %s: %v", page, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "podtail-man.1")); err == nil {
		t.Error("the hidden man command has a page of its own")
	}
}
