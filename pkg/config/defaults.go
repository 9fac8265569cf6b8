package config

import (
	"time"

	"github.com/podtail/podtail/pkg/labels"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
)

// Default returns the configuration used where nothing is said.
func Default() Config {
	return Config{
		Podman: Podman{
			Enabled:           true,
			ReconcileInterval: 10 * time.Second,
			ReconnectBackoff:  5 * time.Second,
			JournalDirs:       []string{"/var/log/journal", "/run/log/journal"},
		},
		Discovery: Discovery{
			TenantLabel:   "tenant",
			AppLabel:      "app",
			VersionLabel:  "version",
			RequireTenant: true,
			ExistingFrom:  "start",
			PodLabels:     true,
			Select:        []SelectRule{},
		},
		Loki: Loki{
			URL:        "http://127.0.0.1:3100",
			BatchSize:  1 << 20,
			BatchWait:  500 * time.Millisecond,
			Timeout:    10 * time.Second,
			MinBackoff: 100 * time.Millisecond,
			MaxBackoff: 10 * time.Second,
			QueueBytes: 6 << 20,
			Headers:    map[string]Secret{},
			TenantAuth: []LokiTenantAuth{},
		},
		DataDir:         "/var/lib/podtail",
		Spool:           Spool{Enabled: true},
		ShutdownTimeout: 10 * time.Second,
		Server:          Server{Listen: "127.0.0.1:9080"},
		Log:             Log{Level: "info", Format: "json"},
		Files: Files{
			MountSuffixes: []string{labels.DefaultMountSuffix},
			PathRegex:     labels.DefaultPathRegex,
			NameRegex:     labels.DefaultNameRegex,
			MountTypes:    []string{"bind", "volume"},
			Include:       []string{"*.log"},
			Exclude:       []string{},
			MaxOpen:       1024,
			PollInterval:  250 * time.Millisecond,
			Static:        []StaticDir{},
			ScanInterval:  10 * time.Second,
		},
		Limits: Limits{
			MaxStreamsPerTenant: 1000,
			MaxLabelValueBytes:  1 << 10,
			MaxLineBytes:        pipeline.DefaultMaxLineBytes,
			LineTooLong:         "truncate",
			Tenants:             []string{},
		},
		Pipeline: Pipelines{
			Container: stage.ContainerPreset(),
			Files:     stage.ZapPreset(),
			Apps:      []AppPipeline{},
		},
		StaticLabels:       map[string]string{},
		StructuredMetadata: []string{"container", "image", "pod", "host"},
	}
}
