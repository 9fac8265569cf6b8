package podman

import "time"

// The libpod API's answers, as much of them as podtail reads. Field names
// follow the JSON Podman writes (its libpod/define and
// pkg/domain/entities/types, v4.3 to v5); encoding/json matches them without
// regard to case, and ignores the rest of each answer.

// apiInfo is GET /libpod/info.
type apiInfo struct {
	Host struct {
		LogDriver string `json:"logDriver"`
	} `json:"host"`
	Store struct {
		GraphRoot       string `json:"graphRoot"`
		GraphDriverName string `json:"graphDriverName"`
	} `json:"store"`
}

// apiListContainer is one element of GET /libpod/containers/json.
type apiListContainer struct {
	ID        string   `json:"Id"`
	Names     []string `json:"Names"`
	State     string   `json:"State"`
	StartedAt int64    `json:"StartedAt"` // Unix seconds; negative or 0 when never started
}

// apiInspect is GET /libpod/containers/{id}/json.
type apiInspect struct {
	ID        string `json:"Id"`
	Name      string `json:"Name"`
	ImageName string `json:"ImageName"`
	Pod       string `json:"Pod"` // the pod's ID, "" when in none
	// IsInfra marks a pod's infra container (Podman's pause process, which
	// holds the pod's namespaces and writes no output).
	IsInfra bool `json:"IsInfra"`
	Config  struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
	State struct {
		Status    string    `json:"Status"`
		Running   bool      `json:"Running"`
		StartedAt time.Time `json:"StartedAt"`
	} `json:"State"`
	HostConfig struct {
		LogConfig struct {
			Type string `json:"Type"`
			Path string `json:"Path"`
		} `json:"LogConfig"`
	} `json:"HostConfig"`
	Mounts []struct {
		Type        string `json:"Type"`
		Name        string `json:"Name"` // a volume's name
		Source      string `json:"Source"`
		Destination string `json:"Destination"`
		RW          bool   `json:"RW"`
	} `json:"Mounts"`
}

// apiPod is GET /libpod/pods/{id}/json (libpod/define.InspectPodData).
type apiPod struct {
	ID     string            `json:"Id"`
	Name   string            `json:"Name"`
	Labels map[string]string `json:"Labels"`
}

// apiEvent is one line of GET /libpod/events (Docker's events.Message shape).
type apiEvent struct {
	ID     string `json:"id"` // older services fill only this, not Actor.ID
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
	Time     int64 `json:"time"`
	TimeNano int64 `json:"timeNano"`
}

// event is what podtail takes from e.
func (e apiEvent) event() Event {
	ev := Event{
		Time:       time.Unix(0, e.TimeNano),
		Action:     e.Action,
		ID:         e.Actor.ID,
		Attributes: e.Actor.Attributes,
	}
	if ev.ID == "" {
		ev.ID = e.ID
	}
	if e.TimeNano == 0 {
		ev.Time = time.Unix(e.Time, 0)
	}
	ev.Name = ev.Attributes["name"]
	ev.Image = ev.Attributes["image"]
	ev.ExitCode = ev.Attributes["containerExitCode"]
	return ev
}
