package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes podtail's man pages, one per command, generated from the
// commands themselves (their help, flags and examples), so the pages cannot
// drift from the binary. Hidden: it is for packagers (make man).
func newManCmd(root *cobra.Command) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "man",
		Short:  "Write podtail's man pages (section 1) into a directory",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			header := &doc.GenManHeader{Title: "PODTAIL", Section: "1", Source: "podtail " + version, Manual: "podtail manual"}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("man pages into %s: %w", dir, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "man", "directory to write podtail.1, podtail-run.1, ... into")
	return cmd
}
