package main

import (
	"os"
	"testing"
	"time"

	"github.com/podtail/podtail/pkg/config"
	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/podman"
)

// The configuration reaches the mapping: discovery.select drops a container
// and `podtail events`/`targets` print the rule; a container in a pod takes
// the pod's labels (pod_labels, on by default); static_labels and the
// source_metadata, with this host's name, are on the target; the default
// file rules read a named volume and logrotate's copies.
func TestMapConfigWiring(t *testing.T) {
	cfg := config.Default()
	cfg.Discovery.Select = []config.SelectRule{{Action: "keep", Source: "label:tenant", Regex: ".+"}, {Action: "drop", Source: "name", Regex: "podtail.*"}}
	cfg.StaticLabels = map[string]string{"cluster": "prod"}
	rules := fileRules(&cfg)
	m := discovery.NewMapper(mapConfig(&cfg, rules))
	ctr := podman.Container{
		ID: "c1", Name: "podtail", Image: "localhost/podtail:latest", Labels: map[string]string{"tenant": "ops"}, State: "running",
		StartedAt: time.Now(), LogDriver: podman.LogDriverFile, LogPath: "/x/ctr.log",
		Mounts: []podman.Mount{{Type: "volume", Name: "logs", Source: "/var/lib/containers/storage/volumes/logs/_data", Destination: "/app/workplace/logs"}},
	}
	_, err := m.Map(ctr)
	d := decision{Reason: errString(err)}
	if want := `skip: dropped by discovery.select[1] (drop, name "podtail" matches "podtail.*")`; d.summary() != want {
		t.Errorf("summary %q, want %q", d.summary(), want)
	}

	ctr.Name, ctr.Labels = "shop-1", nil
	ctr.PodID, ctr.Pod, ctr.PodLabels = "p1", "shop", map[string]string{"tenant": "t1", "app": "a", "version": "v1"}
	tg, err := m.Map(ctr)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if tg.Tenant != "t1" || tg.App != "a" || tg.Version != "v1" || tg.Static["cluster"] != "prod" ||
		tg.Metadata["pod"] != "shop" || tg.Metadata["container"] != "shop-1" || tg.Metadata["host"] != host {
		t.Errorf("target %+v", tg)
	}
	if len(tg.LogDirs) != 1 || tg.LogDirs[0].Path != "/var/lib/containers/storage/volumes/logs/_data" {
		t.Errorf("LogDirs %+v, want the named volume's host directory", tg.LogDirs)
	}
	for name, want := range map[string]bool{"a_b_v1.log": true, "a_b_v1.log.1": true, "a_b_v1.log.2.gz": true, "a_b_v1.log-20261206": true, "a.txt": false} {
		if rules.Reads(name) != want {
			t.Errorf("Reads(%q) = %v, want %v", name, !want, want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
