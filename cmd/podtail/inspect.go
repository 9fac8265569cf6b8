package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spf13/cobra"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/podman"
	"github.com/podtail/podtail/pkg/server"
)

// decision is what podtail makes of one container, for people and for --json.
type decision struct {
	Time      string `json:"time,omitempty"`
	Action    string `json:"action,omitempty"`
	ID        string `json:"id"`
	Name      string `json:"name"`
	State     string `json:"state,omitempty"`
	LogDriver string `json:"log_driver,omitempty"`
	// Output is where the container's stdout and stderr are read from: its
	// k8s-file log's path, or the journal.
	Output     string            `json:"output,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"` // what the Podman API said
	Image      string            `json:"image,omitempty"`
	Pod        string            `json:"pod,omitempty"`
	Collect    bool              `json:"collect"`
	Tenant     string            `json:"tenant,omitempty"`
	App        string            `json:"application,omitempty"`
	Version    string            `json:"version,omitempty"`
	Sources    []string          `json:"sources,omitempty"`
	Reason     string            `json:"reason,omitempty"`
}

func decide(ctx context.Context, api *podman.Client, m *discovery.Mapper, id string) decision {
	c, err := api.Inspect(ctx, id)
	if err != nil {
		d := decision{ID: id, Reason: err.Error()}
		if errors.Is(err, podman.ErrNotFound) {
			d.Reason = "container is gone; podtail finishes reading what its log held"
		}
		return d
	}
	d := decision{ID: c.ID, Name: c.Name, State: c.State, LogDriver: c.LogDriver, Image: c.Image, Pod: c.Pod}
	t, err := m.Map(c)
	if err != nil {
		d.Reason = err.Error()
		return d
	}
	d.Collect, d.Tenant, d.App, d.Version, d.Sources = true, t.Tenant, t.App, t.Version, t.Sources()
	d.Output = t.OutputSource()
	return d
}

func (d decision) summary() string {
	if !d.Collect {
		return "skip: " + strings.TrimPrefix(d.Reason, discovery.ErrSkipped.Error()+": ")
	}
	pod := ""
	if d.Pod != "" {
		pod = " pod=" + d.Pod // the labels may be the pod's
	}
	return fmt.Sprintf("collect tenant=%s application=%s version=%s%s from %s",
		d.Tenant, orDash(d.App), orDash(d.Version), pod, strings.Join(d.Sources, ", "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func connectFor(ctx context.Context, load loader, cmd *cobra.Command) (*config.Config, *podman.Client, error) {
	cfg, err := load(cmd.Flags())
	if err != nil {
		return nil, nil, err
	}
	api, err := podman.Connect(ctx, cfg.Podman.Socket)
	if err != nil {
		return nil, nil, err
	}
	return cfg, api, nil
}

func newEventsCmd(load loader) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream Podman container events with podtail's decision for each",
		Long: "Follows the Podman API's container events and prints, for each, what podtail makes of it:\n" +
			"the tenant, application, version and sources it collects, or why it does not.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			cfg, api, err := connectFor(ctx, load, cmd)
			if err != nil {
				return err
			}
			m := discovery.NewMapper(mapConfig(cfg, fileRules(cfg)))
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintf(tw, "TIME\tACTION\tCONTAINER\tID\tLOG DRIVER\tDECISION\n")
				tw.Flush()
			}
			events := make(chan podman.Event, 64)
			errc := make(chan error, 1)
			go func() { errc <- api.Events(ctx, events, nil) }()
			for {
				select {
				case err := <-errc:
					if err != nil {
						return err
					}
					return nil
				case ev := <-events:
					d := decide(ctx, api, m, ev.ID)
					d.Time, d.Action, d.Attributes = ev.Time.Format(time.RFC3339Nano), ev.Action, ev.Attributes
					if d.Name == "" {
						d.Name = ev.Name
					}
					if asJSON {
						if err := json.NewEncoder(out).Encode(d); err != nil {
							return err
						}
						continue
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ev.Time.Format("15:04:05.000"), ev.Action, d.Name, podman.Short(ev.ID), orDash(d.LogDriver), d.summary())
					tw.Flush()
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines instead of a table")
	addKeyFlags(cmd.Flags(), "podman.socket")
	return cmd
}

func newTargetsCmd(load loader) *cobra.Command {
	var (
		asJSON      bool
		from        string
		tenant, app string
	)
	cmd := &cobra.Command{
		Use:   "targets",
		Short: "List every container and whether podtail collects it",
		Long: `Lists every container Podman has and what podtail makes of it: collected
under which tenant, application and version, from where, or why not.

With --from, asks a running podtail instead (its server.listen address, with
server.status enabled) and lists what it reads: every container's output and
every log file, with its labels, state, bytes read and acknowledged, lag,
and last error.`,
		Example: `  podtail targets
  podtail targets --from 127.0.0.1:9080 --tenant acme
  podtail targets --from http://127.0.0.1:9080 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if from != "" {
				return targetsFrom(ctx, cmd.OutOrStdout(), from, server.Filter{Tenant: tenant, App: app}, asJSON)
			}
			if tenant != "" || app != "" {
				return exitError{code: 2, err: errors.New("--tenant and --app go with --from")}
			}
			cfg, api, err := connectFor(ctx, load, cmd)
			if err != nil {
				return err
			}
			list, err := api.List(ctx)
			if err != nil {
				return err
			}
			sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
			m := discovery.NewMapper(mapConfig(cfg, fileRules(cfg)))
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintf(tw, "CONTAINER\tID\tSTATE\tLOG DRIVER\tDECISION\n")
			}
			for _, s := range list {
				d := decide(ctx, api, m, s.ID)
				if asJSON {
					if err := json.NewEncoder(out).Encode(d); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, podman.Short(s.ID), s.State, orDash(d.LogDriver), d.summary())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines instead of a table")
	cmd.Flags().StringVar(&from, "from", "", "ask the running podtail at this address (host:port or URL; server.status must be on) what it reads")
	cmd.Flags().StringVar(&tenant, "tenant", "", "with --from: only this tenant's sources")
	cmd.Flags().StringVar(&app, "app", "", "with --from: only this application's sources")
	addKeyFlags(cmd.Flags(), "podman.socket")
	return cmd
}

func newConfigCmd(load loader) *cobra.Command {
	cfgCmd := &cobra.Command{Use: "config", Short: "Work with podtail's configuration"}
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration (file, PODTAIL_* env, flags) and print the result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd.Flags())
			if err != nil {
				return err
			}
			return printConfig(cmd.OutOrStdout(), cfg)
		},
	}
	addKeyFlags(check.Flags(), "podman.socket", "loki.url", "data_dir", "server.listen", "log.level", "log.format")
	cfgCmd.AddCommand(check, &cobra.Command{
		Use:   "keys",
		Short: "List every configuration key and its environment variable",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			for _, k := range config.Keys() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s_%s\n", k, config.EnvPrefix, strings.ToUpper(strings.ReplaceAll(k, ".", "_")))
			}
		},
	})
	return cfgCmd
}

// printConfig writes "config OK" and the effective configuration as YAML,
// a file podtail reads back to the same configuration; secrets
// (config.Secret) print as <redacted>.
func printConfig(w io.Writer, cfg *config.Config) error {
	fmt.Fprintln(w, "# config OK; effective configuration (file, PODTAIL_* environment and flags):")
	if cfg.Loki.TLS.InsecureSkipVerify {
		fmt.Fprintln(w, "# WARNING: loki.tls.insecure_skip_verify is true: Loki's certificate is not checked")
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(cfg.Tree()); err != nil {
		return fmt.Errorf("printing the configuration: %w", err)
	}
	return enc.Close()
}
