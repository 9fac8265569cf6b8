package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/source"
	"github.com/podtail/podtail/pkg/source/file"
	"github.com/podtail/podtail/pkg/source/positions"
)

func newPositionsForgetCmd(load loader) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "forget SOURCE...",
		Short: "Delete sources' positions, to ship them again or skip them (podtail must be stopped)",
		Long: `Delete the positions of the sources named, for an operator who must ship a
source again, or skip one. SOURCE is one of:
  container:<id>, file:<dir>#<fingerprint>  a key, as podtail positions list prints it
  <id>, <id prefix>, container:<id prefix>  a container (podman ps's 12 characters do)
  <dir>, file:<dir>                         every file of a log directory
  <path>                                    the source read from that path (list's PATH)
A SOURCE that matches nothing, or several containers (or files) where it names
one, is refused, and then nothing is forgotten. Each match is printed, with
what it matched.

It refuses while a podtail runs on the same data_dir (podtail run holds
data_dir/podtail.lock for its whole life): stop it first, forget, start it
again. The positions file is replaced atomically, like podtail's own writes.

What the next podtail run does with a source without a position:
  container output (k8s-file or journald): a container already started when
    podtail starts follows discovery.existing_from: start (the default) reads
    its output again from the first line, end skips what it holds by then (so
    forget with existing_from: end skips a container's output so far); a
    container started later is read from its first line. A removed
    container whose output is kept in data_dir/spool is read from the spool.
  an app's log file: read again from its first line.
Lines read again that were written before the restart are first looked up in
Loki (query API), as after a crash, and those Loki holds are not sent again:
forget re-ships what Loki lacks, not a second copy. (Per stream, once a batch's
last such line is missing from Loki, the rest of that stream is sent unchecked;
lines without a time of their own get new times and are always sent; without
Loki's query API everything is sent.)`,
		Example: `  systemctl stop podtail
  podtail positions forget fcda6bdb0b2b                           # a container
  podtail positions forget /srv/namespace/t1/app/workplace/logs   # every file of a directory
  podtail positions forget --dry-run file:/srv/logs#1024:7be1c0ffee00aa11bb22cc33
  systemctl start podtail`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := load(cmd.Flags())
			if err != nil {
				return err
			}
			return forgetPositions(cmd.OutOrStdout(), cfg, args, dryRun, time.Now())
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be forgotten, change nothing (works while podtail runs)")
	addKeyFlags(cmd.Flags(), "data_dir")
	return cmd
}

// forgetPositions deletes the positions args match, under data_dir's lock,
// and says what each matched and what the next start does with them. It
// changes nothing unless every argument matches.
func forgetPositions(w io.Writer, cfg *config.Config, args []string, dryRun bool, now time.Time) error {
	dir := cfg.DataDir
	// Read first, without the lock: a data_dir that was never used (a typo)
	// is reported as such rather than created.
	ps, err := positions.Load(dir)
	if err != nil {
		return noPositions(dir, err)
	}
	if !dryRun {
		lock, err := positions.LockDir(dir, "podtail positions forget")
		if err != nil {
			var le *positions.LockedError
			if errors.As(err, &le) {
				return fmt.Errorf("%w; stop it first", err)
			}
			return err
		}
		defer lock.Unlock()
		// Again under the lock: what a podtail stopped meanwhile wrote last.
		if ps, err = positions.Load(dir); err != nil {
			return noPositions(dir, err)
		}
	}
	ms, err := matchSources(args, ps, filepath.Join(dir, "spool"))
	if err != nil {
		return err
	}
	for _, m := range ms {
		fmt.Fprintf(w, "%s (%s): matched %s\n", m.key, newPositionRow(m.key, ps[m.key], now).summary(), m.how)
		if m.spool != "" {
			fmt.Fprintf(w, "  removed container: its output is kept in %s and is read from there\n", m.spool)
		}
	}
	path := filepath.Join(dir, positions.FileName)
	if dryRun {
		fmt.Fprintf(w, "dry run: %s would be forgotten in %s\n", nPositions(len(ms)), path)
		return nil
	}
	store, err := positions.Open(dir)
	if err != nil {
		return err
	}
	for _, m := range ms {
		store.Delete(m.key)
	}
	if err := store.Sync(); err != nil {
		return err
	}
	fmt.Fprintf(w, "forgot %s in %s\n", nPositions(len(ms)), path)
	kinds := map[string]bool{}
	for _, m := range ms {
		kinds[newPositionRow(m.key, ps[m.key], now).Kind] = true
	}
	if kinds[kindK8sFile] || kinds[kindJournal] {
		if cfg.Discovery.ExistingFrom == "end" {
			fmt.Fprintln(w, "next start: container output is skipped up to its end then, for a container already started when podtail starts "+
				"(discovery.existing_from is end); a container started later is read from its first line")
		} else {
			fmt.Fprintf(w, "next start: container output is read again from its first line (discovery.existing_from is %s)\n", cfg.Discovery.ExistingFrom)
		}
	}
	if kinds[kindFile] {
		fmt.Fprintln(w, "next start: log files are read again from their first line")
	}
	return nil
}

// match is one position an argument of forget matched.
type match struct {
	key, how string
	spool    string // the container's spooled log, when it was removed
}

// matchSources resolves forget's arguments to positions (in the order
// given, each once): every argument must match, and one that names a single
// source (a container ID prefix, a fingerprint prefix, a file's path) must
// match exactly one. spoolDir is data_dir/spool.
func matchSources(args []string, ps map[string]positions.Position, spoolDir string) ([]match, error) {
	keys := slices.Sorted(maps.Keys(ps))
	var (
		out  []match
		errs []string
		seen = map[string]bool{}
	)
	for _, arg := range args {
		got, how, err := matchSource(arg, keys, ps)
		if err == nil {
			for _, k := range got {
				err = forgettable(k, spoolDir)
				if err != nil {
					break
				}
			}
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, k := range got {
			if seen[k] {
				continue
			}
			seen[k] = true
			m := match{key: k, how: how}
			if id, ok := strings.CutPrefix(k, source.Key("")); ok {
				if sp := filepath.Join(spoolDir, id+".log"); fileExists(sp) {
					m.spool = sp
				}
			}
			out = append(out, m)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s; nothing forgotten", strings.Join(errs, "; "))
	}
	return out, nil
}

// matchSource resolves one argument of forget: the keys, and how they
// matched.
func matchSource(arg string, keys []string, ps map[string]positions.Position) ([]string, string, error) {
	if arg == "" {
		return nil, "", errors.New(`"" names no source`)
	}
	if _, ok := ps[arg]; ok {
		return []string{arg}, "the key", nil
	}
	withPrefix := func(prefix string) []string {
		var out []string
		for _, k := range keys {
			if strings.HasPrefix(k, prefix) {
				out = append(out, k)
			}
		}
		return out
	}
	one := func(got []string, what string) ([]string, string, error) {
		switch len(got) {
		case 0:
			return nil, "", fmt.Errorf("no position matches %s %q (podtail positions list shows the keys)", what, arg)
		case 1:
			return got, fmt.Sprintf("%s %q", what, arg), nil
		}
		return nil, "", fmt.Errorf("%s %q is ambiguous: it matches %d positions (%s); give the whole key",
			what, arg, len(got), describeKeys(got, ps))
	}
	dirOf := func(d string) ([]string, string) {
		got := withPrefix(file.KeyPrefix(d))
		return got, fmt.Sprintf("log directory %q (%s)", filepath.Clean(d), plural(len(got), "file"))
	}
	switch {
	case strings.HasPrefix(arg, source.Key("")):
		return one(withPrefix(arg), "key prefix")
	case strings.HasPrefix(arg, "file:"):
		rest := strings.TrimPrefix(arg, "file:")
		if strings.Contains(rest, "#") {
			return one(withPrefix(arg), "key prefix")
		}
		if got, how := dirOf(rest); len(got) > 0 {
			return got, how, nil
		}
		return nil, "", fmt.Errorf("no position matches %q: no file of log directory %s has one", arg, filepath.Clean(rest))
	case strings.ContainsRune(arg, '/') || arg == "." || arg == "..":
		p, err := filepath.Abs(arg)
		if err != nil {
			return nil, "", fmt.Errorf("%q: %w", arg, err)
		}
		if got, how := dirOf(p); len(got) > 0 {
			return got, how, nil
		}
		var got []string
		for _, k := range keys {
			if ps[k].Path == p {
				got = append(got, k)
			}
		}
		if len(got) == 0 {
			return nil, "", fmt.Errorf("no position matches %q: it is neither a log directory with stored positions nor the path of a file read", p)
		}
		return one(got, "path")
	case isHex(arg) && len(arg) == 64:
		return one(withPrefix(source.Key(arg)), "container ID")
	case isHex(arg):
		return one(withPrefix(source.Key(arg)), "container ID prefix")
	}
	return nil, "", fmt.Errorf("no position matches %q (give a key as podtail positions list prints it, a container ID or a prefix of one, "+
		"a log directory, or a file's path)", arg)
}

// forgettable refuses a position whose source cannot be read from its
// start again: a removed container's spool made by copying only what was
// undelivered at its removal (SpoolCopy: the part before is a hole, which
// would be read as NUL bytes and shipped as a line).
func forgettable(key, spoolDir string) error {
	id, ok := strings.CutPrefix(key, source.Key(""))
	if !ok {
		return nil
	}
	sp := filepath.Join(spoolDir, id+".log")
	if hole := leadingHole(sp); hole > 0 {
		return fmt.Errorf("%s: the removed container's output in %s is a copy of only what was undelivered at its removal "+
			"(its first %d bytes are a hole, which would be read as NUL bytes); it cannot be read again from its start. "+
			"To skip it instead, remove %s and %s while podtail is stopped", key, sp, hole, sp, strings.TrimSuffix(sp, ".log")+".json")
	}
	return nil
}

// leadingHole is the size of the hole a sparse file starts with (0: none,
// no such file, or a filesystem that does not report holes).
func leadingHole(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return 0
	}
	off, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return st.Size() // no data at all
	}
	if err != nil {
		return 0
	}
	return off
}

// describeKeys lists positions for an ambiguity error: up to five, each
// with what tells it apart.
func describeKeys(keys []string, ps map[string]positions.Position) string {
	var parts []string
	for i, k := range keys {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(keys)-i))
			break
		}
		p := ps[k]
		d := k
		if p.Inode != 0 {
			d += fmt.Sprintf(" inode %d", p.Inode)
		}
		if !p.Updated.IsZero() {
			d += " updated " + p.Updated.UTC().Format(time.RFC3339)
		}
		parts = append(parts, d)
	}
	return strings.Join(parts, ", ")
}

func nPositions(n int) string { return plural(n, "position") }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
