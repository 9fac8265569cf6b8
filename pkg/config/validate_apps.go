package config

// validateApps checks pipeline.apps: each match's regexes and stages.
func (c *Config) validateApps(p *problems) {
	// TODO(issue 17): selector and stage checks (in progress).
}
