package config

import "fmt"

// Secret is a configuration value that must not be shown (a password, a
// token): fmt, JSON, YAML and zap print it as "<redacted>", or "" when it is
// not set. string(s) is the value.
type Secret string

const redacted = "<redacted>"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// MarshalText masks s in every text encoding.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
