package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/podtail/podtail/pkg/discovery"
	"github.com/podtail/podtail/pkg/labels"
)

// The checks of what is collected and what it carries: discovery.select,
// static_labels, source_metadata, and the file name globs.

// SourceMetadataNames are the values source_metadata may list.
var SourceMetadataNames = []string{"container", "image", "pod", "host"}

func (c *Config) validateSelect(p *problems) {
	for i, r := range c.Discovery.Select {
		key := fmt.Sprintf("discovery.select[%d]", i)
		if r.Action != "keep" && r.Action != "drop" {
			p.bad(key+".action", "%q is not one of keep, drop", r.Action)
		}
		switch {
		case r.Source == "name", r.Source == "image", r.Source == "pod":
		case strings.HasPrefix(r.Source, "label:") && len(r.Source) > len("label:"):
		default:
			p.bad(key+".source", "%q is not one of name, image, pod, label:<name>", r.Source)
		}
		if _, err := regexp.Compile("^(?:" + r.Regex + ")$"); err != nil {
			p.bad(key+".regex", "%v", err)
		}
	}
}

func (c *Config) validateStaticLabels(p *problems) {
	for name, v := range c.StaticLabels {
		key := "static_labels." + name
		switch {
		case name == labels.Tenant || name == labels.Application || name == labels.Version || name == labels.Stream:
			p.bad(key, "%s comes from the source, not from configuration", name)
		case labels.ValidName(name) != nil:
			p.bad(key, "%v", labels.ValidName(name))
		case labels.ValidValue(v) != nil || v == "":
			p.bad(key, "value %q: not a label value Loki takes", v)
		}
	}
	for _, m := range c.StructuredMetadata {
		if !slices.Contains(SourceMetadataNames, m) {
			p.bad("source_metadata", "%q is not one of %s", m, strings.Join(SourceMetadataNames, ", "))
		}
	}
}

func (c *Config) validateFileNames(p *problems) {
	for _, t := range c.Files.MountTypes {
		if t != "bind" && t != "volume" {
			p.bad("files.mount_types", "%q is not one of bind, volume", t)
		}
	}
	if len(c.Files.Include) == 0 {
		p.bad("files.include", "must list at least one glob (e.g. \"*.log\")")
	}
	for key, globs := range map[string][]string{"files.include": c.Files.Include, "files.exclude": c.Files.Exclude} {
		for _, g := range globs {
			// (filepath.Match reports a bad pattern only if matching gets
			// that far: "x*[" passes against "".)
			if !discovery.ValidGlob(g) || strings.Contains(g, "/") {
				p.bad(key, "%q is not a glob of file names", g)
			}
		}
	}
}
