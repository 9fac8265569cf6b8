package source

import "github.com/podtail/podtail/pkg/pipeline"

// Pipes are what a container reader runs its output through, per stream
// (stdout, stderr): the stages, and a joiner of multi-line entries (a Go
// panic's trace on stderr). The scheduler picks them per target
// (pipeline.apps).
type Pipes struct {
	// Default runs for a stream ByStream does not name; nil: no stages.
	Default  *pipeline.Pipeline
	ByStream map[string]*pipeline.Pipeline
	// Join makes the joiner of a stream; a stream not in it: every line is
	// an entry.
	Join map[string]func() *pipeline.Multiline
}
