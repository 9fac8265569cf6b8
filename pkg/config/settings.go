package config

import (
	"reflect"
	"sort"
	"time"

	"github.com/docker/go-units"
)

// Keys lists every configuration key, sorted.
func Keys() []string {
	var out []string
	for _, kv := range Default().Settings() {
		out = append(out, kv.Key)
	}
	return out
}

// Setting is one key and its value.
type Setting struct {
	Key   string
	Value any
}

// Settings lists every key of c with its value, sorted by key.
func (c Config) Settings() []Setting {
	m := flatten(c)
	out := make([]Setting, 0, len(m))
	for k, v := range m {
		out = append(out, Setting{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// flatten turns a Config into dotted keys and plain values (durations as
// strings) so viper knows every key, which AutomaticEnv needs.
func flatten(c Config) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := t.Field(i).Tag.Get("mapstructure")
			key := name
			if prefix != "" {
				key = prefix + "." + name
			}
			f := v.Field(i)
			switch x := f.Interface().(type) {
			case time.Duration:
				out[key] = x.String()
			case ByteSize:
				out[key] = int64(x)
			default:
				if f.Kind() == reflect.Struct {
					walk(key, f)
				} else {
					out[key] = x
				}
			}
		}
	}
	walk("", reflect.ValueOf(c))
	return out
}

// Tree is c as nested maps by key, with durations and sizes written as a
// configuration file writes them ("500ms", "6MiB") and secrets kept as
// Secret (they print as <redacted>): what `podtail config check` prints,
// and a file Load reads back to the same configuration but the secrets.
func (c Config) Tree() map[string]any {
	var walk func(v reflect.Value) map[string]any
	walk = func(v reflect.Value) map[string]any {
		out := map[string]any{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := t.Field(i).Tag.Get("mapstructure")
			f := v.Field(i)
			switch x := f.Interface().(type) {
			case time.Duration:
				out[name] = x.String()
			case ByteSize:
				out[name] = units.BytesSize(float64(x))
			default:
				if f.Kind() == reflect.Struct {
					out[name] = walk(f)
				} else {
					out[name] = x
				}
			}
		}
		return out
	}
	return walk(reflect.ValueOf(c))
}
