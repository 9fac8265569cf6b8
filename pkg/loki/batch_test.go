package loki

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/pipeline"
)

// BenchmarkEncode measures what each push costs on the CPU before the
// network: laying out the request and compressing it, for a full
// default-sized batch (its entries are encoded as they are added).
func BenchmarkEncode(b *testing.B) {
	line := strings.Repeat("x", 250)
	bt := newBatch(time.Now())
	for i := 0; bt.bytes < DefaultBatchSize; i++ {
		e := pipeline.Entry{
			Labels: fmt.Sprintf(`{app="shop", stream="stdout", version="v%d"}`, i%4),
			Time:   time.Unix(0, base+int64(i)),
			Line:   line,
		}
		bt.add(&e)
	}
	b.SetBytes(bt.bytes)
	b.ReportAllocs()
	for b.Loop() {
		bt.encode()
	}
}
