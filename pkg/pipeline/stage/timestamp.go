package stage

import (
	"errors"
	"fmt"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// timestampStage is Promtail's timestamp stage: it sets the record's time
// from the field source, read with format, then each of fallback_formats.
//
// Formats are Go layouts or these names: ANSIC, UnixDate, RubyDate, RFC822,
// RFC822Z, RFC850, RFC1123, RFC1123Z, RFC3339, RFC3339Nano (fractions are
// accepted by every layout), Unix, UnixMs, UnixUs, UnixNs (decimal text,
// fractions allowed, exact to the nanosecond: "1732492800.123456" in Unix).
// location (an IANA name such as "Asia/Shanghai") is the zone of layouts
// that carry none; the default is UTC. A layout without a year (e.g.
// syslog's "Jan _2 15:04:05") gets the current one.
//
// action_on_failure, when the field is missing or no format reads it:
// fudge (default) gives the line the last time this stage read plus 1ns
// (the source's time until one was read); skip keeps the source's time.
type timestampStage struct {
	source  string
	formats []tsFormat
	loc     *time.Location
	fudge   bool
	last    time.Time
	lastOK  bool
	now     func() time.Time
}

var _ pipeline.Stage = (*timestampStage)(nil)

type tsFormat struct {
	layout string
	unit   int // an epoch unit, or 0 for a layout
}

var namedLayouts = map[string]string{
	"ANSIC": time.ANSIC, "UnixDate": time.UnixDate, "RubyDate": time.RubyDate,
	"RFC822": time.RFC822, "RFC822Z": time.RFC822Z, "RFC850": time.RFC850,
	"RFC1123": time.RFC1123, "RFC1123Z": time.RFC1123Z,
	"RFC3339": time.RFC3339, "RFC3339Nano": time.RFC3339Nano,
}

var epochUnits = map[string]int{"Unix": unitS, "UnixMs": unitMs, "UnixUs": unitUs, "UnixNs": unitNs}

type timestampOptions struct {
	Source          string   `mapstructure:"source"`
	Format          string   `mapstructure:"format"`
	FallbackFormats []string `mapstructure:"fallback_formats"`
	Location        string   `mapstructure:"location"`
	ActionOnFailure string   `mapstructure:"action_on_failure"`
}

func newTimestampStage(spec map[string]any) (*timestampStage, error) {
	o := timestampOptions{ActionOnFailure: "fudge"}
	var errs []error
	if err := decode(spec, &o); err != nil {
		errs = append(errs, err)
	}
	if o.Source == "" {
		errs = append(errs, optErrorf("source", "required"))
	}
	s := &timestampStage{loc: time.UTC, now: time.Now}
	if o.Format == "" {
		errs = append(errs, optErrorf("format", "required"))
	} else if f, err := parseTSFormat(o.Format); err != nil {
		errs = append(errs, &optErr{key: "format", err: err})
	} else {
		s.formats = append(s.formats, f)
	}
	for i, ff := range o.FallbackFormats {
		f, err := parseTSFormat(ff)
		if err != nil {
			errs = append(errs, &optErr{key: fmt.Sprintf("fallback_formats[%d]", i), err: err})
			continue
		}
		s.formats = append(s.formats, f)
	}
	if o.Location != "" {
		loc, err := time.LoadLocation(o.Location)
		if err != nil {
			errs = append(errs, &optErr{key: "location", err: err})
		}
		s.loc = loc
	}
	fudge, err := parseActionOnFailure(o.ActionOnFailure)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.source, s.fudge = o.Source, fudge
	return s, nil
}

func parseTSFormat(f string) (tsFormat, error) {
	if u, ok := epochUnits[f]; ok {
		return tsFormat{unit: u}, nil
	}
	if l, ok := namedLayouts[f]; ok {
		return tsFormat{layout: l}, nil
	}
	// A Go layout must print something that reads back.
	ref := time.Date(2024, 11, 25, 13, 14, 15, 0, time.UTC)
	if _, err := time.Parse(f, ref.Format(f)); err != nil || ref.Format(f) == f {
		return tsFormat{}, fmt.Errorf("%q is neither a known format (RFC3339, RFC3339Nano, Unix, UnixMs, UnixUs, UnixNs, ...) nor a Go layout", f)
	}
	return tsFormat{layout: f}, nil
}

// Process implements Stage.
func (s *timestampStage) Process(r *pipeline.Record) (bool, string) {
	if v, ok := r.Fields[s.source]; ok {
		for _, f := range s.formats {
			if t, ok := s.parse(f, v); ok {
				r.Time = t
				s.last, s.lastOK = t, true
				return true, ""
			}
		}
	}
	if s.fudge && s.lastOK {
		s.last = s.last.Add(time.Nanosecond)
		r.Time = s.last
	}
	return true, ""
}

func (s *timestampStage) parse(f tsFormat, v string) (time.Time, bool) {
	if f.unit != 0 {
		return parseEpoch(v, f.unit)
	}
	t, err := time.ParseInLocation(f.layout, v, s.loc)
	if err != nil {
		return time.Time{}, false
	}
	if t.Year() == 0 {
		t = t.AddDate(s.now().In(s.loc).Year(), 0, 0)
	}
	return t, true
}
