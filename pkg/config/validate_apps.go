package config

import (
	"fmt"

	"github.com/podtail/podtail/pkg/pipeline/stage"
)

// validateApps checks pipeline.apps through the selector podtail run
// builds from them, so what passes here is what runs: each match's regexes
// compile, each stage list builds, and no entry is one that can never
// apply. Each problem names its key: `pipeline.apps[2].match.application:
// ...`, `pipeline.apps[0].files[1]: json: expressions.level: ...`.
func (c *Config) validateApps(p *problems) {
	sc := c.Pipeline.SelectorConfig()
	// pipeline.container and pipeline.files have checks of their own
	// (validateContainerPipeline, validateFilesPipeline): given here too,
	// their problems would be reported twice.
	sc.Container, sc.Files = nil, nil
	_, err := stage.NewSelector(sc)
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		*p = append(*p, fmt.Errorf("pipeline.%w", e)) // the selector names keys under pipeline
	}
}

// SelectorConfig is what the stage selector chooses among: pipeline.apps
// in order, then pipeline.container and pipeline.files.
func (p Pipelines) SelectorConfig() stage.SelectorConfig {
	sc := stage.SelectorConfig{Container: p.Container, Files: p.Files}
	for _, a := range p.Apps {
		sc.Apps = append(sc.Apps, stage.App{
			Match: stage.Match{
				Tenant:      a.Match.Tenant,
				Application: a.Match.Application,
				Version:     a.Match.Version,
				Stream:      a.Match.Stream,
				Labels:      a.Match.Labels,
			},
			Container: a.Container,
			Files:     a.Files,
		})
	}
	return sc
}
