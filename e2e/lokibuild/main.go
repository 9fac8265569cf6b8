// Command loki starts a real single-binary Loki v3 for podtail's tests and demo.
//
// Loki's own cmd/loki cannot be `go install`ed (its go.mod has replace
// directives), so this small module requires the Loki module, repeats those
// replace lines in its own go.mod, and starts Loki the way cmd/loki/main.go
// does: parse flags and the YAML file, set the default limits, init the
// logger, validate, run. Nothing here is podtail code; it only exists so the
// test bed runs a genuine Loki rather than a stand-in.
package main

import (
	// Must stay first: otel's grpc encoding falls back to the proto codec and
	// panics when none is registered yet (see Loki's cmd/loki/main.go).
	_ "google.golang.org/grpc/encoding/proto"

	"flag"
	"fmt"
	"os"
	"time"

	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/grafana/loki/v3/pkg/loki"
	loki_runtime "github.com/grafana/loki/v3/pkg/runtime"
	_ "github.com/grafana/loki/v3/pkg/util/build"
	"github.com/grafana/loki/v3/pkg/util/cfg"
	util_log "github.com/grafana/loki/v3/pkg/util/log"
	"github.com/grafana/loki/v3/pkg/validation"
)

func main() {
	start := time.Now()
	var config loki.ConfigWrapper
	if err := cfg.DynamicUnmarshal(&config, os.Args[1:], flag.CommandLine); err != nil {
		fmt.Fprintf(os.Stderr, "failed parsing config: %v\n", err)
		os.Exit(1)
	}
	config.LimitsConfig.SetGlobalOTLPConfig(config.Distributor.OTLPConfig)
	if err := config.LimitsConfig.SetDefaultPolicyStreamMapping(config.Distributor.DefaultPolicyStreamMappings); err != nil {
		fmt.Fprintf(os.Stderr, "policy stream mappings: %v\n", err)
		os.Exit(1)
	}
	validation.SetDefaultLimitsForYAMLUnmarshalling(config.LimitsConfig)
	loki_runtime.SetDefaultLimitsForYAMLUnmarshalling(config.OperationalConfig)

	config.Server.Log = util_log.InitLogger(&config.Server, prometheus.DefaultRegisterer, false)
	if err := config.Validate(); err != nil {
		level.Error(util_log.Logger).Log("msg", "validating config", "err", err.Error())
		util_log.Flush()
		os.Exit(1)
	}
	if config.VerifyConfig {
		fmt.Println("config is valid")
		os.Exit(0)
	}
	t, err := loki.New(config.Config)
	util_log.CheckFatal("initializing loki", err, util_log.Logger)
	err = t.Run(loki.RunOpts{StartTime: start})
	util_log.CheckFatal("running loki", err, util_log.Logger)
}
