// Command promtail starts a real Promtail for podtail's benchmark (bench/).
//
// Loki 3.7 dropped Promtail's main package (clients/cmd/promtail) but still
// ships the Promtail library (clients/pkg/promtail), and the Go module proxy
// serves no older v3 that the test bed already has. So this small module
// requires the same Loki module as e2e/lokibuild, repeats its replace lines,
// and starts Promtail the way the removed main did: flags and the YAML file
// through Loki's cfg package, the logger, then promtail.New and Run. Nothing
// here is podtail code; it exists so the benchmark measures a genuine
// Promtail rather than a stand-in.
package main

import (
	"flag"
	"fmt"
	"os"
	"sync"

	_ "time/tzdata"

	"github.com/go-kit/log/level"
	"github.com/grafana/dskit/flagext"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/grafana/loki/v3/clients/pkg/logentry/stages"
	"github.com/grafana/loki/v3/clients/pkg/promtail"
	"github.com/grafana/loki/v3/clients/pkg/promtail/client"
	promtail_config "github.com/grafana/loki/v3/clients/pkg/promtail/config"
	_ "github.com/grafana/loki/v3/pkg/util/build"
	"github.com/grafana/loki/v3/pkg/util/cfg"
	util_log "github.com/grafana/loki/v3/pkg/util/log"
)

// config is Promtail's configuration plus the command-line switches the
// removed main had that matter here.
type config struct {
	promtail_config.Config `yaml:",inline"`
	configFile             string
	configExpandEnv        bool
}

func (c *config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.configFile, "config.file", "", "yaml file to load")
	f.BoolVar(&c.configExpandEnv, "config.expand-env", false, "expand ${var} in the config file from the environment")
	c.Config.RegisterFlags(f)
}

// Clone returns a copy, so cfg can parse another flag set without touching c.
func (c *config) Clone() flagext.Registerer {
	return func(c config) *config { return &c }(*c)
}

func main() {
	args := os.Args[1:]
	var c config
	if err := cfg.DefaultUnmarshal(&c, args, flag.CommandLine); err != nil {
		fmt.Fprintln(os.Stderr, "promtail: parsing config:", err)
		os.Exit(1)
	}
	server := &c.Config.ServerConfig.Config
	server.Log = util_log.InitLogger(server, prometheus.DefaultRegisterer, false)
	// Without this the stages log debug lines' arguments even when not printed.
	stages.Debug = server.LogLevel.String() == "debug"

	// Promtail re-reads its config on SIGHUP or /reload through this.
	var mu sync.Mutex
	reread := func() (*promtail_config.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		var c config
		if err := cfg.DefaultUnmarshal(&c, args, flag.NewFlagSet(os.Args[0], flag.ContinueOnError)); err != nil {
			return nil, fmt.Errorf("parsing config: %w", err)
		}
		return &c.Config, nil
	}
	p, err := promtail.New(c.Config, reread, client.NewMetrics(prometheus.DefaultRegisterer), false)
	if err != nil {
		level.Error(util_log.Logger).Log("msg", "error creating promtail", "err", err)
		util_log.Flush()
		os.Exit(1)
	}
	level.Info(util_log.Logger).Log("msg", "Starting Promtail")
	defer p.Shutdown()
	if err := p.Run(); err != nil {
		level.Error(util_log.Logger).Log("msg", "error running promtail", "err", err)
		util_log.Flush()
		os.Exit(1)
	}
}
