package source

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/pipeline"
)

// What the readers of a container's output (ContainerOutput, JournalOutput)
// have in common.

// drainSettle is how long a draining reader must find nothing new before it
// takes the end of what it reads for the end of the container's output.
const drainSettle = 300 * time.Millisecond

// handOver is the outcome of handing entries to the stream: nil once ctx
// has ended (what was not handed over is read again after a restart).
func handOver(ctx context.Context, t discovery.Target, err error) error {
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("container %s: %w", t.Name, err)
}

// outputLog is log with the fields that name t's container.
func outputLog(log *zap.Logger, t discovery.Target) *zap.Logger {
	return log.WithLazy(zap.String("container", t.Name), zap.String("id", t.ID[:min(12, len(t.ID))]), zap.String("tenant", t.Tenant))
}

// sourceMetadata is t's structured metadata (source_metadata: container,
// image, pod, host) in name order, so that every entry carries it alike.
func sourceMetadata(t discovery.Target) []pipeline.Label {
	if len(t.Metadata) == 0 {
		return nil
	}
	md := make([]pipeline.Label, 0, len(t.Metadata))
	for name, value := range t.Metadata {
		md = append(md, pipeline.Label{Name: name, Value: value})
	}
	slices.SortFunc(md, func(a, b pipeline.Label) int { return cmp.Compare(a.Name, b.Name) })
	return md
}
