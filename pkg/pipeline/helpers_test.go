package pipeline

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the source's time in tests: distinct from every time in the lines.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
