package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Every key is documented in the README's reference and in the shipped
// default configuration, and that file loads to exactly the defaults.
func TestDocsCoverEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(readme), "| `"+k+"` |") {
			t.Errorf("README.md configuration table lacks %s", k)
		}
	}
	c, err := Load("../../config/podtail.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, want := c.Settings(), Default().Settings()
	for i := range want {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("config/podtail.yaml: %s = %v, default is %v", got[i].Key, got[i].Value, want[i].Value)
		}
	}
}
