package labels

import (
	"strings"
	"testing"
)

// CutValue bounds a value on a character boundary and repairs invalid
// UTF-8; Sanitize leaves out what Loki would refuse or treat as absent.
func TestCutValueAndSanitize(t *testing.T) {
	for _, c := range []struct {
		in      string
		max     int
		want    string
		changed bool
	}{
		{"shop", 64, "shop", false},
		{"ééé", 5, "éé", true}, // 6 bytes; never half a character
		{"a\xffb", 64, "a\uFFFDb", true},
		{strings.Repeat("x", 3000), 0, strings.Repeat("x", MaxValueLength), true},
	} {
		got, changed := CutValue(c.in, c.max)
		if got != c.want || changed != c.changed {
			t.Errorf("CutValue(%.20q, %d) = %.20q, %v; want %.20q, %v", c.in, c.max, got, changed, c.want, c.changed)
		}
	}
	out, cut, dropped := Sanitize(map[string]string{
		"tenant": "acme", "__name__": "x", "bad-name": "y", "empty": "", "long": "abcdef", "first": "€x",
	}, 2)
	want := map[string]string{"tenant": "ac", "long": "ab"}
	if len(out) != len(want) || out["tenant"] != "ac" || out["long"] != "ab" {
		t.Errorf("Sanitize = %v, want %v", out, want)
	}
	// tenant and long cut, first cut to nothing; __name__, bad-name, empty
	// and first left out.
	if cut != 3 || dropped != 4 {
		t.Errorf("cut %d, dropped %d; want 3, 4", cut, dropped)
	}
}
