package source

import (
	"context"
	"errors"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/pipeline"
	"github.com/podtail/podtail/pkg/pipeline/stage"
	"github.com/podtail/podtail/pkg/podman"
	"github.com/podtail/podtail/pkg/source/file"
	"github.com/podtail/podtail/pkg/source/positions"
)

// forgetAfter is how long the position of a container that no longer exists
// is kept: long enough for its last lines to be delivered. forgetEvery is
// how often Sync looks (it walks every position; Sync runs on every event).
const (
	forgetAfter = time.Hour
	forgetEvery = time.Minute
)

// Files configures the directory tailers the scheduler starts.
type Files struct {
	// Rules label the files and say which ones are read.
	Rules     *discovery.FileRules
	Poll      time.Duration
	OpenFiles *file.OpenFiles
	ReadSlots *file.ReadSlots // nil: no bound
	Watch     *file.Watcher   // nil: each tailer has its own
	Metrics   *file.Metrics
}

// Config configures a Scheduler.
type Config struct {
	ExistingFrom string // "start" or "end", for containers' output
	// Select chooses the stages of each container's streams and each
	// directory's files (pipeline.container, pipeline.files,
	// pipeline.apps); nil: no stages, and every line is an entry.
	Select  *stage.Selector
	Files   *Files   // nil: no file tailing
	Spool   *Spool   // nil: removed containers' logs are not kept
	Catcher *Catcher // nil: logs are opened when their reader starts
	Journal Journal  // for containers of the journald log driver
	// Watch tells k8s-file readers when their log's directory changes
	// (nil: they poll).
	Watch *file.Watcher
}

// Scheduler runs one reader per container log and one tailer per log
// directory, each under its own child context, and reconciles them with the
// target set discovery publishes.
//
// A reader of a stopped container reads to the end and ends; it is started
// again only if the container starts again (a new StartedAt). A directory is
// read while any running target claims it (several versions of an app share
// one logs directory). Positions are never dropped when a container stops
// (the peers' bug that re-sends a whole history on restart), only an hour
// after it is removed.
type Scheduler struct {
	ctx     context.Context
	store   *positions.Store
	out     pipeline.Sink
	cfg     Config
	metrics *Metrics
	log     *zap.Logger

	mu       sync.Mutex
	wg       sync.WaitGroup
	running  map[string]*run
	finished map[string]int64 // source key -> StartedAt of the run read to its end
	warned   map[string]bool
	forgot   time.Time       // when Sync last forgot positions of gone containers
	present  map[string]bool // container IDs in the last Sync
	// stopped: the sources that ended while their target is still wanted
	// (read to the end, or stopped by an error), for Status.
	stopped map[string]endedRun
}

type source interface {
	Run(ctx context.Context) error
	SetDraining(bool)
	// Wake makes a waiting source look again now: its container started,
	// so a log file waited for since the create event is there.
	Wake()
}

type run struct {
	src       source
	startedAt int64
	tenant    string
	logPath   string // a container's log file; "" for directories and the journal
	output    string // where a container's output is read from (Target.OutputSource)
	target    discovery.Target
	dir       discovery.LogDir   // a directory's
	cancel    context.CancelFunc // ends this run alone (nil for starters)
}

// NewScheduler returns a scheduler whose readers live under ctx.
func NewScheduler(ctx context.Context, store *positions.Store, out pipeline.Sink, cfg Config, m *Metrics, log *zap.Logger) *Scheduler {
	return &Scheduler{
		ctx: ctx, store: store, out: out, cfg: cfg, metrics: m, log: log,
		running: map[string]*run{}, finished: map[string]int64{}, warned: map[string]bool{},
		stopped: map[string]endedRun{},
	}
}

// wanted is one source the current targets ask for.
type wanted struct {
	running   bool
	startedAt int64
	tenant    string
	logPath   string
	output    string // where inspect says the output is; "" for a spooled log
	target    discovery.Target
	dir       discovery.LogDir // a directory's
	make      func() source
}

// Sync brings the readers in line with targets, the complete current set.
func (s *Scheduler) Sync(targets []discovery.Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]*wanted{}
	containers := map[string]bool{}
	for _, t := range targets {
		containers[t.ID] = true
		if t.HasOutput() {
			want[Key(t.ID)] = &wanted{running: t.Running, startedAt: t.StartedAt, tenant: t.Tenant, logPath: t.LogPath,
				output: t.OutputSource(), target: t, make: s.containerSource(t)}
		}
		if s.cfg.Files == nil {
			continue
		}
		for _, d := range t.LogDirs {
			key := "dir:" + d.Path
			w, ok := want[key]
			if !ok {
				want[key] = &wanted{running: t.Running, startedAt: t.StartedAt, tenant: t.Tenant, target: t, dir: d, make: s.dirSource(t, d)}
				continue
			}
			if w.tenant != t.Tenant {
				// One directory, two tenants: never mix them. The first
				// claimant keeps it; the conflict is the platform's to fix.
				if !s.warned[key+t.ID] {
					s.warned[key+t.ID] = true
					s.log.Error("log directory claimed by containers of two tenants; not read for the second",
						zap.String("dir", d.Path), zap.String("tenant", w.tenant), zap.String("refused_tenant", t.Tenant), zap.String("container", t.Name))
				}
				continue
			}
			w.running = w.running || t.Running
			w.startedAt = max(w.startedAt, t.StartedAt)
		}
	}
	s.present = maps.Clone(containers)
	if sp := s.cfg.Spool; sp != nil {
		for _, t := range targets {
			if (t.LogPath != "" || t.LogDriver == podman.LogDriverJournal) && t.StartedAt != 0 {
				sp.Keep(t)
			}
		}
		// Containers removed with output not yet delivered: read on from
		// the spool's link, then let it go.
		for _, t := range sp.Gone(containers) {
			key := Key(t.ID)
			containers[t.ID] = true // keep its position meanwhile
			if _, busy := s.running[key]; !busy && want[key] == nil && t.LogDriver != podman.LogDriverJournal && unacked(t.LogPath, s.store, key) == 0 {
				sp.Release(t.ID)
				continue
			}
			if want[key] == nil {
				// No output: a reader still draining the removed log through
				// its descriptor goes on; only a new one reads the spool.
				want[key] = &wanted{startedAt: t.StartedAt, tenant: t.Tenant, logPath: t.LogPath, make: s.containerSource(t)}
			}
		}
	}
	for key, w := range want {
		if r, ok := s.running[key]; ok && w.output != "" && r.output != w.output && r.cancel != nil {
			// A reader started from the create event on the default path
			// (or driver), and inspect says the output goes elsewhere
			// (--log-opt path=, --log-driver): read it there instead. The
			// old reader found nothing at a path conmon never wrote.
			s.log.Info("container output is elsewhere than first assumed; reading it there",
				zap.String("source", key), zap.String("was", r.output), zap.String("now", w.output))
			r.cancel()
			delete(s.running, key)
		}
		if r, ok := s.running[key]; ok {
			if r.startedAt != w.startedAt {
				r.startedAt = w.startedAt // a (re)start the reader goes on with
				r.src.Wake()
			}
			r.src.SetDraining(!w.running)
			continue
		}
		if f, ok := s.finished[key]; ok && !w.running && f == w.startedAt {
			continue // this run was read to its end
		}
		s.start(key, w)
	}
	for key, r := range s.running {
		if want[key] == nil {
			r.src.SetDraining(true) // gone: finish what the open files hold
			if c, ok := r.src.(*ContainerOutput); ok && s.cfg.Spool != nil && s.cfg.Spool.copyOnRemoval(r.target.ID) {
				// Removed: Podman deleted the log this reader holds open.
				// Copy what is undelivered before a restart could lose it.
				sp, t := s.cfg.Spool, r.target
				s.wg.Add(1)
				go func() { defer s.wg.Done(); sp.Copy(t, c.SpoolCopy) }()
			}
		}
	}
	for key := range s.finished {
		if want[key] == nil {
			delete(s.finished, key)
		}
	}
	for key := range s.stopped {
		if want[key] == nil {
			delete(s.stopped, key)
		}
	}
	if time.Since(s.forgot) >= forgetEvery {
		s.forgot = time.Now()
		s.store.Forget(forgetAfter, func(key string) bool {
			id, ok := strings.CutPrefix(key, Key(""))
			return !ok || containers[id]
		})
	}
}

func (s *Scheduler) containerSource(t discovery.Target) func() source {
	return func() source {
		p := containerPipes(s.cfg.Select, t, s.log)
		fromEnd := t.Existing && s.cfg.ExistingFrom == "end"
		if t.LogDriver == podman.LogDriverJournal {
			return NewJournalOutput(t, s.cfg.Journal, s.store, p, s.out, fromEnd, s.metrics, s.log)
		}
		c := NewContainerOutput(t, s.store, p, s.out, fromEnd, s.metrics, s.log)
		c.catch = s.cfg.Catcher
		c.watcher = s.cfg.Watch
		return c
	}
}

func (s *Scheduler) dirSource(t discovery.Target, d discovery.LogDir) func() source {
	f := s.cfg.Files
	return func() source {
		cfg := file.Config{
			Dir:    d.Path,
			Tenant: t.Tenant,
			Labels: func(name string) (map[string]string, bool) {
				return f.Rules.FileLabels(t, d, name), true
			},
			Stages: func(name string) (*pipeline.Pipeline, *pipeline.Multiline) {
				return fileStages(s.cfg.Select, f.Rules, t, d, name, s.log)
			},
			Match:     f.Rules.Reads,
			Metadata:  sourceMetadata(t),
			Poll:      f.Poll,
			OpenFiles: f.OpenFiles,
			ReadSlots: f.ReadSlots,
			Watch:     f.Watch,
		}
		return file.NewDir(cfg, s.store, s.out, f.Metrics, s.log)
	}
}

func (s *Scheduler) start(key string, w *wanted) {
	src := w.make()
	src.SetDraining(!w.running)
	r := &run{src: src, startedAt: w.startedAt, tenant: w.tenant, logPath: w.logPath, output: w.output, target: w.target, dir: w.dir}
	s.running[key] = r
	delete(s.stopped, key)
	s.metrics.targets.Inc()
	s.wg.Add(1)
	// A directory runs under the scheduler's own context: nothing cancels
	// one alone (it ends by draining), and a context of its own per
	// directory was a few hundred bytes each, with 500 of them. A
	// container's reader has its own, which Sync cancels when the output
	// turns out to be elsewhere.
	ctx, cancel := s.ctx, context.CancelFunc(func() {})
	if strings.HasPrefix(key, Key("")) {
		ctx, cancel = context.WithCancel(s.ctx)
		r.cancel = cancel
	}
	if st, ok := src.(starter); ok {
		st.Start(ctx, func(err error) { s.ended(ctx, cancel, key, r, err) })
		return
	}
	go func() { s.ended(ctx, cancel, key, r, src.Run(ctx)) }()
}

// starter is a source that runs without a goroutine of its own while it
// waits (file.Dir, ContainerOutput, JournalOutput): done is called once
// when it ends.
type starter interface {
	Start(ctx context.Context, done func(error))
}

func (s *Scheduler) ended(ctx context.Context, cancel context.CancelFunc, key string, r *run, err error) {
	defer s.wg.Done()
	defer cancel()
	defer s.metrics.targets.Dec()
	gone := errors.Is(err, errLogGone) // nothing was read: said by the reader
	if err != nil && !gone {
		s.log.Error("source stopped", zap.String("source", key), zap.Error(err))
	}
	if id, ok := strings.CutPrefix(key, Key("")); ok && s.cfg.Spool != nil && ctx.Err() == nil {
		// What is left to deliver: the spooled log past the acknowledged
		// offset, or the journald reader's lines in flight (it read the
		// journal to the end of the container's entries, or failed).
		left := func() int64 { return unacked(s.cfg.Spool.logPath(id), s.store, key) }
		if o, ok := r.src.(*JournalOutput); ok {
			left = o.inFlight
		}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.release(s.ctx, id, left) }()
	}
	s.mu.Lock()
	if s.running[key] == r {
		delete(s.running, key)
		if ctx.Err() == nil {
			if !gone {
				s.finished[key] = r.startedAt
			}
			s.stopped[key] = endedRun{run: r, err: err, at: time.Now()}
		}
	}
	s.mu.Unlock()
}

// release lets the spool's link of a container that was read to its end
// go, once the container is gone and Loki has acknowledged all of it, so
// that a removed container's log does not wait for the next Sync to be freed.
func (s *Scheduler) release(ctx context.Context, id string, left func() int64) {
	for {
		s.mu.Lock()
		gone := !s.present[id]
		s.mu.Unlock()
		if !gone {
			return // stopped, not removed: its removal's Sync will see to it
		}
		if left() == 0 {
			s.cfg.Spool.Release(id)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Wait blocks until every reader has returned (after ctx is cancelled).
func (s *Scheduler) Wait() { s.wg.Wait() }

// lagDesc: per source, how far delivery trails what was written.
var lagDesc = prometheus.NewDesc("podtail_source_unacked_bytes",
	"Per source, bytes written to its log files that Loki has not acknowledged yet: read lag plus what is in flight. "+
		"source is container:<id> or dir:<path>.",
	[]string{"tenant", "source"}, nil)

// Describe and Collect make the scheduler a collector of podtail_source_unacked_bytes,
// computed at scrape time from the positions (what was acknowledged) and the
// files' sizes (what was written), so it costs nothing between scrapes.
func (s *Scheduler) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

func (s *Scheduler) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	type src struct{ key, tenant, logPath string }
	var srcs []src
	for key, r := range s.running {
		srcs = append(srcs, src{key, r.tenant, r.logPath})
	}
	s.mu.Unlock()
	for _, x := range srcs {
		var lag int64
		if strings.HasPrefix(x.key, Key("")) && x.logPath == "" {
			continue // read from the journal: no byte count to compare
		}
		if x.logPath != "" {
			lag = unacked(x.logPath, s.store, x.key)
		} else {
			dir := strings.TrimPrefix(x.key, "dir:")
			for _, k := range s.store.Keys(file.KeyPrefix(dir)) {
				if p, ok := s.store.Get(k); ok && p.Path != "" {
					lag += unacked(p.Path, s.store, k)
				}
			}
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), x.tenant, x.key)
	}
}

// unacked is path's size beyond the acknowledged offset stored under key: 0
// when the file is gone, or when path is now another file than the position
// was for (rotated away: its rest is read through the open descriptor, and
// not counted here).
func unacked(path string, store *positions.Store, key string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	p, ok := store.Get(key)
	if ino := inodeOf(fi); ok && ino != 0 && p.Inode != 0 && ino != p.Inode {
		return 0
	}
	return max(fi.Size()-max(p.Offset, p.Delivered), 0)
}
