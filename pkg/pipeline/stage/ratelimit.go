package stage

import (
	"errors"
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/podtail/podtail/pkg/pipeline"
)

// limitStage is Promtail's limit stage for one stream: a token bucket
// (golang.org/x/time/rate) of rate lines per second and burst lines; a
// line over the limit is dropped with reason "rate_limited". Each Pipeline
// from Build has its own bucket, so build one pipeline per stream.
//
// drop: false (Promtail's default, which makes the stage wait) is refused:
// waiting here would hold the source without releasing anything upstream
// in a way the sink can account for; back-pressure comes from the sink.
type limitStage struct {
	lim *rate.Limiter
	now func() time.Time
}

var _ pipeline.Stage = (*limitStage)(nil)

type limitOptions struct {
	Rate  float64 `mapstructure:"rate"`
	Burst *int    `mapstructure:"burst"`
	Drop  *bool   `mapstructure:"drop"`
}

func newLimitStage(spec map[string]any) (*limitStage, error) {
	var o limitOptions
	var errs []error
	if err := decode(spec, &o); err != nil {
		errs = append(errs, err)
	}
	if !(o.Rate > 0) || math.IsInf(o.Rate, 0) {
		errs = append(errs, optErrorf("rate", "must be a number of lines per second above 0"))
	}
	burst := int(math.Ceil(o.Rate))
	if o.Burst != nil {
		burst = *o.Burst
		if burst < 1 {
			errs = append(errs, optErrorf("burst", "must be at least 1"))
		}
	}
	if burst < 1 {
		burst = 1
	}
	if o.Drop != nil && !*o.Drop {
		errs = append(errs, optErrorf("drop", "false (wait instead of dropping) is not supported yet: set drop: true or leave it out"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &limitStage{lim: rate.NewLimiter(rate.Limit(o.Rate), burst), now: time.Now}, nil
}

// Process implements Stage.
func (s *limitStage) Process(*pipeline.Record) (bool, string) {
	if s.lim.AllowN(s.now(), 1) {
		return true, ""
	}
	return false, "rate_limited"
}
