package config

import (
	"fmt"
	"strings"

	"github.com/docker/go-units"
)

// ByteSize is a size in bytes that reads "1MiB", "512KB" or a plain number.
type ByteSize int64

// UnmarshalText parses a human size; units are binary (1KB = 1024).
func (b *ByteSize) UnmarshalText(text []byte) error {
	n, err := units.RAMInBytes(strings.TrimSpace(string(text)))
	if err != nil {
		return fmt.Errorf("not a size (want e.g. 1MiB, 512KB, 1048576): %q", text)
	}
	*b = ByteSize(n)
	return nil
}
