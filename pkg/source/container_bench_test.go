package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
)

// discard takes every entry at once, as a sink with endless room and an
// instant Loki would.
type discard struct {
	n      atomic.Int64
	all    int64
	cancel func() // called once all entries are in
}

// Consume acknowledges every 1,024th entry (and the last), everything up
// to it: Loki's answers settle a batch at a time.
func (d *discard) Consume(_ context.Context, es []pipeline.Entry) (int, error) {
	for _, e := range es {
		n := d.n.Add(1)
		if e.Ack != nil && (n%1024 == 0 || n == d.all) {
			e.Ack.Ack(e.Pos)
		}
		if n == d.all {
			d.cancel()
		}
	}
	return len(es), nil
}

// BenchmarkContainerOutput: the container reader over a k8s-file log of
// zap lines (CRI parsing, joining, the Stream), per line: without stages,
// and with podtail's default container pipeline.
func BenchmarkContainerOutput(b *testing.B) {
	b.Run("stages=none", func(b *testing.B) { benchContainerOutput(b, false) })
	b.Run("stages=preset", func(b *testing.B) { benchContainerOutput(b, true) })
}

func benchContainerOutput(b *testing.B, preset bool) {
	const lines = 100_000
	var sb strings.Builder
	for i := 0; i < lines; i++ {
		stream := Stdout
		if i%10 == 0 {
			stream = Stderr
		}
		sb.WriteString(cri(int64(i)*1000, stream, "F", fmt.Sprintf(`{"level":"info","ts":1764029174.404991,"caller":"orders/handler.go:146","msg":"request served","method":"GET","path":"/api/v1/orders/%d","status":200,"seq":%d}`, i, i)))
	}
	path := filepath.Join(b.TempDir(), "ctr.log")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()) / lines)
	b.ResetTimer()
	for done := 0; done < b.N; done += lines {
		b.StopTimer()
		store, err := openStoreErr(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		d := &discard{}
		var p *pipeline.Pipeline
		if preset {
			if p, err = stage.Build(stage.ContainerPreset()); err != nil {
				b.Fatal(err)
			}
		}
		co := NewContainerOutput(testTarget(path), store, Pipes{Default: p}, pipeline.Sink{Consumer: d}, false, NewMetrics(prometheus.NewRegistry()), zap.NewNop())
		ctx, cancel := context.WithCancel(context.Background())
		d.all, d.cancel = lines, cancel // ends Run once every line is in
		b.StartTimer()
		if err := co.Run(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cancel()
		if d.n.Load() != lines {
			b.Fatalf("%d entries, want %d", d.n.Load(), lines)
		}
		b.StartTimer()
	}
}
