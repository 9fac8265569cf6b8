package pipeline

import (
	"time"
)

// Record is what stages see and change: one log line between its source and
// the sink. Stream labels of the source are not in it: stages only add
// labels (bounded values, e.g. log_level), never change the tenant.
type Record struct {
	Time time.Time
	Line string
	// Fields holds values extracted by parsers (json, logfmt, regex) for the
	// stages after them; it is not shipped.
	Fields map[string]string
	// Labels are stream labels added by stages.
	Labels map[string]string
	// Metadata is Loki structured metadata (caller, request ids, file name).
	Metadata []Label

	mdSlab []Label // room for the Metadata of records to come (SetMetadata)
	mdCap  int     // room per record in mdSlab; 0: 2
}

// SetMetadata sets name to value, replacing an earlier value of name.
func (r *Record) SetMetadata(name, value string) {
	for i := range r.Metadata {
		if r.Metadata[i].Name == name {
			r.Metadata[i].Value = value
			return
		}
	}
	if r.Metadata == nil {
		// Every zap line has a caller: slices for 16 records come from one
		// allocation, each capped so that growing it copies rather than
		// writes into its neighbour's. (Each Stream keeps its slab: 1 KiB,
		// not more, as a thousand files have a thousand Streams.) A
		// Stream with metadata of its own (StreamConfig.Metadata) makes
		// room for it too.
		n := max(r.mdCap, 2)
		if len(r.mdSlab) < n {
			r.mdSlab = make([]Label, n*16)
		}
		r.Metadata, r.mdSlab = r.mdSlab[:0:n], r.mdSlab[n:]
	}
	r.Metadata = append(r.Metadata, Label{Name: name, Value: value})
}

// Stage is one processing step. Process changes r in place and returns
// false when r is to be dropped, with the reason counted under that name.
// Stages are used from one goroutine at a time per Pipeline instance.
type Stage interface {
	Process(r *Record) (keep bool, dropReason string)
}

// StageFunc adapts a function to Stage.
type StageFunc func(r *Record) (bool, string)

// Process calls f.
func (f StageFunc) Process(r *Record) (bool, string) { return f(r) }

// FieldsSkipper is a Stage that can leave Fields unfilled when no stage
// after it reads them: NewStream calls SkipFields on its pipeline's last
// stage (see Pipeline.fieldsUnread). The zap stage (pkg/pipeline/stage)
// is one.
type FieldsSkipper interface {
	Stage
	SkipFields()
}

// Pipeline runs stages in order.
type Pipeline struct {
	stages []Stage
}

// New returns a pipeline of stages.
func New(stages ...Stage) *Pipeline { return &Pipeline{stages: stages} }

// fieldsUnread tells p that nothing reads a record's Fields after it (a
// Stream does not). A parser's fields are for the stages after it, so the
// last stage's are then never read, and a zap stage skips them: filling and
// clearing a map per line was a tenth of the zap preset's cost. (Any last
// stage that is a FieldsSkipper is told so.)
func (p *Pipeline) fieldsUnread() {
	if n := len(p.stages); n > 0 {
		if z, ok := p.stages[n-1].(FieldsSkipper); ok {
			z.SkipFields()
		}
	}
}

// Process runs every stage on r until one drops it.
func (p *Pipeline) Process(r *Record) (keep bool, dropReason string) {
	for _, s := range p.stages {
		if keep, reason := s.Process(r); !keep {
			return false, reason
		}
	}
	return true, ""
}

// Len is the number of stages.
func (p *Pipeline) Len() int { return len(p.stages) }
