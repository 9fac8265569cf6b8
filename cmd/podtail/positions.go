package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/podtail/podtail/pkg/source"
	"github.com/podtail/podtail/pkg/source/positions"
)

// lockDataDir takes data_dir's lock for `podtail run`, for its whole life:
// a second podtail on the same data_dir is refused, since both would read
// and send every source and each overwrite the other's positions.
func lockDataDir(dir string) (*positions.Lock, error) {
	l, err := positions.LockDir(dir, "podtail run")
	var le *positions.LockedError
	if errors.As(err, &le) {
		return nil, fmt.Errorf("%w; not starting a second one on data_dir %s: two collectors on one positions file "+
			"send every line twice and overwrite each other's positions", err, dir)
	}
	return l, err
}

// The kinds of position, by source.
const (
	kindK8sFile = "k8s-file" // a container's output, read from its k8s-file log (or its spool)
	kindJournal = "journald" // a container's output, read from the systemd journal
	kindFile    = "file"     // an app's log file
	kindOther   = "other"    // a key this podtail does not make
)

// positionRow is one stored position, for people and for --json.
type positionRow struct {
	Key         string `json:"key"`
	Kind        string `json:"kind"`
	Container   string `json:"container,omitempty"` // the container's ID (container:<id>)
	Dir         string `json:"dir,omitempty"`       // the log directory (file:<dir>#<fingerprint>)
	Fingerprint string `json:"fingerprint,omitempty"`
	Path        string `json:"path,omitempty"`
	Inode       uint64 `json:"inode,omitempty"`
	// Offset is the byte offset Loki acknowledged everything before (where
	// reading resumes); absent for journald, whose position is Cursor.
	Offset           *int64            `json:"offset,omitempty"`
	Delivered        int64             `json:"delivered,omitempty"`
	DeliveredStreams map[string]int64  `json:"delivered_streams,omitempty"`
	Cursor           string            `json:"cursor,omitempty"`
	DeliveredCursor  string            `json:"delivered_cursor,omitempty"`
	DeliveredCursors map[string]string `json:"delivered_cursors,omitempty"`
	Updated          time.Time         `json:"updated"`
	AgeSeconds       float64           `json:"age_seconds"`
}

func newPositionRow(key string, p positions.Position, now time.Time) positionRow {
	r := positionRow{
		Key: key, Kind: kindOf(key, p), Path: p.Path, Inode: p.Inode, Fingerprint: p.Fingerprint,
		Delivered: p.Delivered, DeliveredStreams: p.DeliveredStreams,
		Cursor: p.Cursor, DeliveredCursor: p.DeliveredCursor, DeliveredCursors: p.DeliveredCursors,
		Updated: p.Updated,
	}
	if r.Kind != kindJournal {
		off := p.Offset
		r.Offset = &off
	}
	if id, ok := strings.CutPrefix(key, source.Key("")); ok {
		r.Container = id
	}
	if rest, ok := strings.CutPrefix(key, "file:"); ok {
		if i := strings.LastIndexByte(rest, '#'); i >= 0 { // fingerprints hold no '#'; a directory may
			r.Dir = rest[:i]
			if r.Fingerprint == "" {
				r.Fingerprint = rest[i+1:]
			}
		}
	}
	if !p.Updated.IsZero() {
		r.AgeSeconds = max(now.Sub(p.Updated), 0).Seconds()
	}
	return r
}

// kindOf tells what a position is for: the key says container or file, and
// a container's position says how its output is read (a k8s-file log has a
// path, the journal a cursor).
func kindOf(key string, p positions.Position) string {
	switch {
	case strings.HasPrefix(key, "file:"):
		return kindFile
	case !strings.HasPrefix(key, source.Key("")):
		return kindOther
	case p.Path == "" && (p.Cursor != "" || p.DeliveredCursor != "" || len(p.DeliveredCursors) > 0):
		return kindJournal
	default:
		return kindK8sFile
	}
}

// acked is what Loki acknowledged, in one cell: the position and, when a
// line or entry was still being joined there, what was delivered past it.
func (r positionRow) acked() string {
	var b strings.Builder
	if r.Kind == kindJournal {
		if r.Cursor == "" {
			b.WriteString("cursor - (before the container's first entry)")
		} else {
			b.WriteString("cursor " + r.Cursor)
		}
		if r.DeliveredCursor != "" {
			b.WriteString(", delivered_cursor " + r.DeliveredCursor)
		}
		for _, s := range slices.Sorted(maps.Keys(r.DeliveredCursors)) {
			fmt.Fprintf(&b, ", delivered_cursors %s=%s", s, r.DeliveredCursors[s])
		}
		return b.String()
	}
	fmt.Fprintf(&b, "offset %d", *r.Offset)
	if r.Delivered != 0 {
		fmt.Fprintf(&b, ", delivered %d", r.Delivered)
	}
	for _, s := range slices.Sorted(maps.Keys(r.DeliveredStreams)) {
		fmt.Fprintf(&b, ", delivered_streams %s=%d", s, r.DeliveredStreams[s])
	}
	return b.String()
}

// age is how long ago the position last moved, to the second.
func (r positionRow) age() string {
	if r.Updated.IsZero() {
		return "-"
	}
	return (time.Duration(r.AgeSeconds*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
}

// summary is a position in a few words, for forget's report.
func (r positionRow) summary() string {
	s := r.Kind
	if r.Path != "" {
		s += " " + r.Path
	}
	if r.Kind == kindJournal {
		s += ", journal cursor"
	} else {
		s += fmt.Sprintf(", offset %d", *r.Offset)
	}
	return s + ", updated " + r.age() + " ago"
}

// printPositions writes ps, ordered by key: a table, or JSON lines.
func printPositions(w io.Writer, path string, ps map[string]positions.Position, now time.Time, asJSON bool) error {
	keys := slices.Sorted(maps.Keys(ps))
	if asJSON {
		enc := json.NewEncoder(w)
		for _, k := range keys {
			if err := enc.Encode(newPositionRow(k, ps[k], now)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(keys) == 0 {
		_, err := fmt.Fprintf(w, "no positions stored in %s\n", path)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "KEY\tKIND\tAGE\tINODE\tPATH\tACKED\n")
	for _, k := range keys {
		r := newPositionRow(k, ps[k], now)
		ino := "-"
		if r.Inode != 0 {
			ino = fmt.Sprint(r.Inode)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Key, r.Kind, r.age(), ino, orDash(r.Path), r.acked())
	}
	return tw.Flush()
}

func newPositionsCmd(load loader) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "positions",
		Short: "Show or forget what data_dir's positions file holds",
		Long: `data_dir/positions.json holds, per source, how far Loki has acknowledged it;
podtail moves a position only past lines Loki acknowledged, and resumes there.
Keys: container:<id> for a container's output (k8s-file: a byte offset in its
log, or in its copy in data_dir/spool once the container is removed; journald:
a journal cursor), file:<dir>#<fingerprint> for an app's log file (a byte
offset; the fingerprint, the length and hash of its first bytes, follows the
file through renames and gzip).`,
	}
	cmd.AddCommand(newPositionsListCmd(load), newPositionsForgetCmd(load))
	return cmd
}

func newPositionsListCmd(load loader) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the stored positions: per source, what Loki acknowledged, and how long ago",
		Long: `List what data_dir's positions file holds, one source per row, ordered by key.
It reads the file and changes nothing, so it works while podtail runs (podtail
replaces the file whole when it writes: list sees the old one or the new one).

KIND is k8s-file or journald for a container's output, file for an app's log
file. AGE is since the position last moved (each acknowledgement moves it).
INODE and PATH are the file read (k8s-file, file). ACKED is what Loki
acknowledged: offset, the byte reading resumes at (everything before it was
delivered), or for journald the cursor of the entry reading resumes after;
delivered (delivered_cursor) when a line conmon split, or a multi-line entry,
was still being joined there: complete lines up to it are not sent again;
delivered_streams (delivered_cursors): the same for one output stream whose
multi-line entry is not delivered yet. --json prints the same as JSON lines,
with updated (RFC 3339) and age_seconds.`,
		Example: `  podtail positions list --data_dir /var/lib/podtail
  podtail positions list --json | jq 'select(.age_seconds > 3600)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd.Flags())
			if err != nil {
				return err
			}
			ps, err := positions.Load(cfg.DataDir)
			if err != nil {
				return noPositions(cfg.DataDir, err)
			}
			return printPositions(cmd.OutOrStdout(), filepath.Join(cfg.DataDir, positions.FileName), ps, time.Now(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON lines instead of a table")
	addKeyFlags(cmd.Flags(), "data_dir")
	return cmd
}

// noPositions explains a positions file that cannot be read.
func noPositions(dir string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w (no podtail has run with data_dir %s; give --data_dir or --config)", err, dir)
	}
	return err
}
