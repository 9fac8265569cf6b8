package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Load reads the configuration: defaults, then file (if not empty), then
// PODTAIL_* environment variables, then the flags in fs that are set and are
// named after a key (e.g. --loki.url). Unknown keys in the file are errors.
func Load(file string, fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	keys := map[string]bool{}
	for k, val := range flatten(Default()) {
		keys[k] = true
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", file, err)
		}
		var unknown []error
		for _, k := range v.AllKeys() {
			// Header names and static label names are the user's to choose.
			if !keys[k] && !strings.HasPrefix(k, "loki.headers.") && !strings.HasPrefix(k, "static_labels.") {
				if to, ok := movedKeys[k]; ok {
					unknown = append(unknown, fmt.Errorf("%s: moved to %s", k, to))
					continue
				}
				unknown = append(unknown, fmt.Errorf("%s: unknown key%s", k, suggest(k, keys)))
			}
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("config file %s: %w", file, errors.Join(unknown...))
		}
	}
	if fs != nil {
		var bindErr error
		fs.VisitAll(func(f *pflag.Flag) {
			if keys[f.Name] {
				bindErr = errors.Join(bindErr, v.BindPFlag(f.Name, f))
			}
		})
		if bindErr != nil {
			return nil, bindErr
		}
	}

	cfg := Default()
	err := v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		durationHook,
		mapstructure.TextUnmarshallerHookFunc(),
		// A list from the environment or a flag is one string:
		// PODTAIL_LIMITS_TENANTS=a,b.
		mapstructure.StringToSliceHookFunc(","),
	)), func(dc *mapstructure.DecoderConfig) {
		// Keys inside lists of structs (pipeline.apps[0].fils) are not among
		// the known keys checked above: a misspelt one is an error here
		// rather than silently ignored.
		dc.ErrorUnused = true
	})
	if err != nil {
		return nil, fmt.Errorf("%s%w", where(file), cleanDecodeError(err))
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s%w", where(file), err)
	}
	return &cfg, nil
}

// movedKeys are keys that now have another name.
var movedKeys = map[string]string{
	"files.max_line_bytes": "limits.max_line_bytes (it bounds container output too)",
}

func where(file string) string {
	if file == "" {
		return "config: "
	}
	return "config file " + file + ": "
}

// durationHook parses durations like mapstructure's own hook, but keeps the
// offending text in the error, which mapstructure's drops.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	d, err := time.ParseDuration(data.(string))
	if err != nil {
		return nil, fmt.Errorf("%q is not a duration (want e.g. 500ms, 10s, 1m)", data)
	}
	return d, nil
}

// cleanDecodeError strips mapstructure's preamble so the message starts with
// the key: "loki.batch_wait: time: invalid duration ...".
func cleanDecodeError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "\n\n"); i >= 0 {
		msg = msg[i+2:]
	}
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "'") {
			if j := strings.Index(l[1:], "'"); j >= 0 {
				l = l[1:j+1] + ":" + l[j+2:]
			}
		}
		lines = append(lines, l)
	}
	return errors.New(strings.Join(lines, "; "))
}

// suggest names the known key closest to k, for typos.
func suggest(k string, keys map[string]bool) string {
	best, bestD := "", 4
	for known := range keys {
		if d := distance(k, known); d < bestD {
			best, bestD = known, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// distance is the Levenshtein distance, for short config keys.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
