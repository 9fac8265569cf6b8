package stage

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// dropStage is Promtail's drop stage, plus a level shortcut and sampling.
//
// A line matches when every condition given holds:
//   - source (a field): with value, the field equals value; with
//     expression, the regex (RE2, unanchored) matches the field; with
//     neither, the field exists. Without source, expression is matched
//     against the line (value needs a source);
//   - older_than: the line's time is more than this duration ago;
//   - longer_than: the line is longer than this many bytes ("8KB" = 8192);
//   - level: the record's log_level label (set by zap / json_auto), else
//     its "level" field lower-cased, is one of these levels.
//
// A stage without any condition matches every line (useful with
// drop_ratio alone). A matching line is dropped with reason
// drop_counter_reason (default "drop_stage").
//
// drop_ratio (0..1, default 1) samples the matching lines: a line is
// dropped when a hash of its text (FNV-1a 64, salted with the stage's
// position so that two sampling stages are independent) maps into
// [0, drop_ratio). The decision depends only on the line, so a line read
// again after a restart is dropped or kept as before. Identical lines share
// one fate.
type dropStage struct {
	source     string
	value      *string
	re         *regexp.Regexp
	olderThan  time.Duration
	longerThan int
	levels     []string
	ratio      float64
	reason     string
	salt       uint64
	now        func() time.Time
}

var _ pipeline.Stage = (*dropStage)(nil)

type dropOptions struct {
	Source            string        `mapstructure:"source"`
	Value             *string       `mapstructure:"value"`
	Expression        string        `mapstructure:"expression"`
	OlderThan         time.Duration `mapstructure:"older_than"`
	LongerThan        byteSize      `mapstructure:"longer_than"`
	Level             []string      `mapstructure:"level"`
	DropRatio         *float64      `mapstructure:"drop_ratio"`
	DropCounterReason string        `mapstructure:"drop_counter_reason"`
}

func newDropStage(spec map[string]any, index int) (*dropStage, error) {
	o := dropOptions{DropCounterReason: "drop_stage"}
	var errs []error
	if err := decode(spec, &o); err != nil {
		errs = append(errs, err)
	}
	s := &dropStage{source: o.Source, value: o.Value, olderThan: o.OlderThan, longerThan: int(o.LongerThan),
		ratio: 1, reason: o.DropCounterReason, now: time.Now}
	if o.Value != nil && o.Expression != "" {
		errs = append(errs, optErrorf("value", "value and expression cannot both be set"))
	}
	if o.Value != nil && o.Source == "" {
		errs = append(errs, optErrorf("value", "needs source (the field to compare)"))
	}
	if o.Expression != "" {
		re, err := regexp.Compile(o.Expression)
		if err != nil {
			errs = append(errs, &optErr{key: "expression", err: err})
		}
		s.re = re
	}
	if o.OlderThan < 0 {
		errs = append(errs, optErrorf("older_than", "must not be negative"))
	}
	if o.LongerThan < 0 {
		errs = append(errs, optErrorf("longer_than", "must not be negative"))
	}
	for i, l := range o.Level {
		lv := strings.ToLower(l)
		if zapLevel(lv) == "" && lv != LevelUnknown {
			errs = append(errs, optErrorf(fmt.Sprintf("level[%d]", i), "%q is not one of %s, %s", l, strings.Join(zapLevels[:], ", "), LevelUnknown))
			continue
		}
		s.levels = append(s.levels, lv)
	}
	if o.DropRatio != nil {
		if r := *o.DropRatio; !(r >= 0 && r <= 1) {
			errs = append(errs, optErrorf("drop_ratio", "%v is not between 0 and 1", r))
		} else {
			s.ratio = r
		}
	}
	if o.DropCounterReason == "" {
		errs = append(errs, optErrorf("drop_counter_reason", "must not be empty"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.salt = uint64(index)
	return s, nil
}

// Process implements Stage.
func (s *dropStage) Process(r *pipeline.Record) (bool, string) {
	if !s.matches(r) {
		return true, ""
	}
	if s.ratio < 1 && sampleUnit(r.Line, s.salt) >= s.ratio {
		return true, ""
	}
	return false, s.reason
}

func (s *dropStage) matches(r *pipeline.Record) bool {
	if s.source != "" {
		v, ok := r.Fields[s.source]
		if !ok {
			return false
		}
		if s.value != nil && v != *s.value {
			return false
		}
		if s.re != nil && !s.re.MatchString(v) {
			return false
		}
	} else if s.re != nil && !s.re.MatchString(r.Line) {
		return false
	}
	if s.olderThan > 0 && !r.Time.Before(s.now().Add(-s.olderThan)) {
		return false
	}
	if s.longerThan > 0 && len(r.Line) <= s.longerThan {
		return false
	}
	if len(s.levels) > 0 {
		lv, ok := r.Labels[pipeline.LabelLogLevel]
		if !ok {
			lv = strings.ToLower(r.Fields["level"])
		}
		found := false
		for _, l := range s.levels {
			if l == lv {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// sampleUnit maps line to [0, 1) with FNV-1a 64 over a salt and the line.
func sampleUnit(line string, salt uint64) float64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < 8; i++ {
		h ^= (salt >> (8 * i)) & 0xff
		h *= prime
	}
	for i := 0; i < len(line); i++ {
		h ^= uint64(line[i])
		h *= prime
	}
	// FNV's low bits mix poorly for short inputs: finish with a
	// multiply-xorshift (splitmix64's) before taking the top 53 bits.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return float64(h>>11) / (1 << 53)
}
