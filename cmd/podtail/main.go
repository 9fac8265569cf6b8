// Command podtail collects Podman containers' logs and ships them to Loki,
// one tenant per X-Scope-OrgID.
//
//	podtail run [--config FILE]        collect and ship
//	podtail events [--json]            what the Podman API says, and what podtail makes of it
//	podtail targets [--json]           what would be collected now
//	podtail config check [--config F]  validate a configuration, naming bad keys
//	podtail version
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podtail/podtail/pkg/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		code := 1
		var ee exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		// One line: the reader should see what is wrong and where.
		fmt.Fprintln(os.Stderr, "podtail: "+strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(code)
	}
}

func newRootCmd() *cobra.Command {
	var configFile string
	root := &cobra.Command{
		Use:           "podtail",
		Short:         "Ship Podman containers' logs to Loki, per tenant",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&configFile, "config", "c", os.Getenv("PODTAIL_CONFIG"),
		"YAML configuration file (env PODTAIL_CONFIG)")
	load := func(fs *pflag.FlagSet) (*config.Config, error) {
		c, err := config.Load(configFile, fs)
		if err != nil {
			return nil, exitError{code: 2, err: err}
		}
		return c, nil
	}
	root.AddCommand(
		newRunCmd(load),
		newEventsCmd(load),
		newTargetsCmd(load),
		newConfigCmd(load),
		&cobra.Command{
			Use:   "version",
			Short: "Print podtail's version",
			Args:  cobra.NoArgs,
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "podtail", version) },
		},
	)
	root.AddCommand(newManCmd(root))
	root.AddCommand(newPipelineCmd(load))
	root.AddCommand(newPositionsCmd(load))
	root.AddCommand(newTapCmd(load))
	return root
}

type loader func(fs *pflag.FlagSet) (*config.Config, error)

// addKeyFlags adds flags named after configuration keys; config.Load binds
// the ones that are set.
func addKeyFlags(fs *pflag.FlagSet, keys ...string) {
	help := map[string]string{
		"podman.socket": "Podman API socket (unix:///... ; empty: auto-detect)",
		"loki.url":      "Loki base URL",
		"data_dir":      "directory for positions",
		"server.listen": "address of /metrics and /ready",
		"log.level":     "debug, info, warn or error",
		"log.format":    "json or console",
	}
	defaults := map[string]any{}
	for _, s := range config.Default().Settings() {
		defaults[s.Key] = s.Value
	}
	for _, k := range keys {
		// The flag's own default stays empty, so that config.Load binds only
		// the flags given (a flag's default would override the file); the
		// configuration's default is in the help instead.
		h := help[k]
		if d := fmt.Sprint(defaults[k]); d != "" {
			h += " (default " + d + ")"
		}
		fs.String(k, "", h)
	}
}

func newLogger(c config.Log) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	zc := zap.NewProductionConfig()
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.OutputPaths = []string{"stderr"}
	return zc.Build()
}
