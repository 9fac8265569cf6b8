//go:build race

package loki

// raceEnabled: sync.Pool drops a share of what it is given under the race
// detector, so allocation counts do not hold.
const raceEnabled = true
