package journal

import (
	"testing"

	"go.uber.org/goleak"
)

// Readers start no goroutine; a Watcher's one ends with Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
