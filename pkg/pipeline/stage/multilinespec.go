package stage

import (
	"errors"
	"fmt"

	"github.com/podtail/podtail/pkg/pipeline"
)

// NewMultilineFromSpec is pipeline.NewMultiline from a spec map as Build takes
// (`type: multiline` may be present). Errors are prefixed "multiline: ".
func NewMultilineFromSpec(spec map[string]any) (*pipeline.Multiline, error) {
	var errs []error
	in := make(map[string]any, len(spec))
	for k, v := range spec {
		in[k] = v
	}
	if t, ok := in["type"]; ok && t != "multiline" {
		errs = append(errs, optErrorf("type", "%v is not multiline", t))
	}
	for alias, name := range map[string]string{"firstline": "first_line", "max_wait_time": "max_wait"} {
		if v, ok := in[alias]; ok {
			if _, dup := in[name]; dup {
				errs = append(errs, optErrorf(alias, "%s and %s are the same option: give one", alias, name))
			}
			in[name] = v
			delete(in, alias)
		}
	}
	var cfg pipeline.MultilineConfig
	if err := decode(in, &cfg); err != nil {
		errs = append(errs, err)
	}
	var m *pipeline.Multiline
	if len(errs) == 0 {
		var err error
		if m, err = pipeline.NewMultiline(cfg); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		var out []error
		for _, e := range errs {
			for _, f := range flatten(e) {
				out = append(out, fmt.Errorf("multiline: %w", f))
			}
		}
		return nil, errors.Join(out...)
	}
	return m, nil
}
