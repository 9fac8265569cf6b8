package source

import (
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
)

// How the scheduler turns the stages pipeline.apps chooses (stage.Selector)
// into each source's pipelines and joiners.

// containerPipes are the pipelines and joiners of t's output. Every
// container line is stdout or stderr, so stdout's choice is the default and
// stderr gets a pipeline of its own only when its choice differs: the usual
// container (one choice for both) costs one pipeline, as before
// pipeline.apps.
func containerPipes(sel *stage.Selector, t discovery.Target, log *zap.Logger) Pipes {
	src := stage.Source{Tenant: t.Tenant, Application: t.App, Version: t.Version, Labels: t.Labels}
	out, errOut := sel.Select(src, Stdout), sel.Select(src, Stderr)
	log.Debug("stages chosen", zap.String("container", t.Name), zap.Stringer("stdout", out), zap.Stringer("stderr", errOut))
	p := Pipes{Default: out.Pipeline()}
	if errOut != out {
		p.ByStream = map[string]*pipeline.Pipeline{Stderr: errOut.Pipeline()}
	}
	for stream, c := range map[string]*stage.Choice{Stdout: out, Stderr: errOut} {
		if j := c.Joiner(); j != nil {
			if p.Join == nil {
				p.Join = make(map[string]func() *pipeline.Multiline, 2)
			}
			p.Join[stream] = j
		}
	}
	return p
}

// fileStages are the stages and joiner of the file name of d, a directory
// of t, chosen by the labels the file is shipped with (a version in its own
// name wins) when the tailer opens it.
func fileStages(sel *stage.Selector, rules *discovery.FileRules, t discovery.Target, d discovery.LogDir, name string, log *zap.Logger) (*pipeline.Pipeline, *pipeline.Multiline) {
	c := fileChoice(sel, rules, t, d, name)
	log.Debug("stages chosen", zap.String("dir", d.Path), zap.String("file", name), zap.Stringer("stages", c))
	var ml *pipeline.Multiline
	if j := c.Joiner(); j != nil {
		ml = j()
	}
	return c.Pipeline(), ml
}

// fileChoice is the choice for the file name of d, by the labels it is
// shipped with (discovery.FileRules.FileLabels); name "" gives the
// directory's.
func fileChoice(sel *stage.Selector, rules *discovery.FileRules, t discovery.Target, d discovery.LogDir, name string) *stage.Choice {
	ls := rules.FileLabels(t, d, name)
	return sel.Select(stage.Source{
		Tenant: ls[labels.Tenant], Application: ls[labels.Application], Version: ls[labels.Version], Labels: t.Labels,
	}, stage.StreamFile)
}
