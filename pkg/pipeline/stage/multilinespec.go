package stage

import (
	"errors"
	"fmt"

	"github.com/podtail/podtail/pkg/pipeline"
)

// NewMultilineFromSpec is pipeline.NewMultiline from a spec map as Build takes
// (`type: multiline` may be present). Errors are prefixed "multiline: ".
func NewMultilineFromSpec(spec map[string]any) (*pipeline.Multiline, error) {
	cfg, err := multilineConfig(spec)
	if err != nil {
		return nil, err
	}
	m, err := pipeline.NewMultiline(cfg)
	if err != nil {
		return nil, multilineErrors([]error{err})
	}
	return m, nil
}

// multilineConfig decodes a multiline spec: apart from NewMultiline, so that
// a joiner per file (Choice.Joiner) does not decode its spec each time.
func multilineConfig(spec map[string]any) (pipeline.MultilineConfig, error) {
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
	if len(errs) > 0 {
		return cfg, multilineErrors(errs)
	}
	return cfg, nil
}

// multilineErrors prefixes each of errs, opened, with "multiline: ".
func multilineErrors(errs []error) error {
	var out []error
	for _, e := range errs {
		for _, f := range flatten(e) {
			out = append(out, fmt.Errorf("multiline: %w", f))
		}
	}
	return errors.Join(out...)
}
