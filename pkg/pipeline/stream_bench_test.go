package pipeline

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// ackingSink takes every entry and acknowledges each run at once, as a sink
// whose Loki answers in no time.
type ackingSink struct{}

func (ackingSink) Consume(_ context.Context, es []Entry) (int, error) {
	if n := len(es); n > 0 {
		es[n-1].Ack.Ack(es[n-1].Pos)
	}
	return len(es), nil
}

// benchStream is a file's Stream as podtail runs it: lines borrowed from
// the read buffer, source metadata, and one stage doing what the zap
// preset leaves on a record (a log_level label, caller metadata) without
// its parsing, so that the Stream's own work is what is measured.
func benchStream(sink Sink) *Stream {
	level := StageFunc(func(r *Record) (bool, string) {
		r.Labels[LabelLogLevel] = "info"
		r.SetMetadata("caller", "orders/handler.go:42")
		return true, ""
	})
	return NewStream(StreamConfig{
		Tenant:        "acme",
		Labels:        map[string]string{"tenant": "acme", "application": "shop", "version": "v1"},
		Collide:       time.Microsecond,
		BorrowedLines: true,
		Metadata:      []Label{{Name: "container", Value: "shop-1"}},
	}, New(level), sink)
}

const benchLine = `{"level":"info","ts":1700000000.123456,"caller":"orders/handler.go:42","msg":"order placed","n":12345,"request_id":"req-00012345","path":"/api/v1/orders","took":0.000345}`

// benchSend sends b.N lines through s, a read of 64 at a time (Flush after
// each), and reports the cost per line: in time, and in the process's CPU
// time (cpu-ns/line: all its goroutines', a tap's reader's too), which
// other work on a shared machine disturbs less.
func benchSend(b *testing.B, s *Stream) {
	ctx := context.Background()
	t0 := time.Unix(1_700_000_000, 0)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Send(ctx, t0.Add(time.Duration(i)*time.Microsecond), benchLine, int64(i+1), "stream", "file"); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/line")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/line")
}

// processCPU is the CPU time the process has used (user and system), in
// nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// Send's cost per line, the hot path of every source.
func BenchmarkStreamSend(b *testing.B) {
	benchSend(b, benchStream(Sink{Consumer: ackingSink{}}))
}
