package config

import (
	"strings"
	"testing"
)

// The limits section: defaults that validate, each bad value named by its
// key, and files.max_line_bytes pointing at its new name.
func TestLimitsKeys(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if d.Limits.MaxLineBytes != 256<<10 || d.Limits.LineTooLong != "truncate" || d.Limits.MaxStreamsPerTenant != 1000 {
		t.Errorf("defaults: %+v", d.Limits)
	}
	_, err := Load(writeFile(t, `limits:
  max_streams_per_tenant: -1
  max_label_value_bytes: 4KiB
  max_line_bytes: 100
  line_too_long: cut
  tenants: [acme, "a|b"]
`), nil)
	for _, want := range []string{"limits.max_streams_per_tenant", "limits.max_label_value_bytes", "limits.max_line_bytes", `limits.line_too_long: "cut"`, "limits.tenants[1]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %s", err, want)
		}
	}
	c, err := Load(writeFile(t, "limits:\n  line_too_long: drop\n  max_line_bytes: 1MiB\n  tenants: [acme, beiluo]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Limits.Tenants) != 2 || c.Limits.Tenants[1] != "beiluo" || c.Limits.LineTooLong != "drop" || c.Limits.MaxLineBytes != 1<<20 {
		t.Errorf("limits = %+v", c.Limits)
	}
	_, err = Load(writeFile(t, "files:\n  max_line_bytes: 1MiB\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "files.max_line_bytes: moved to limits.max_line_bytes") {
		t.Errorf("old key: %v", err)
	}
}
