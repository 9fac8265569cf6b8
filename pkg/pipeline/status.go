package pipeline

import "time"

// Oldest reports the time of the oldest entry the Stream sent and has not
// had acknowledged yet (its time as sent to Loki), and whether there is
// one: the status page's lag in seconds. It takes the lock Ack takes, once
// per call; nothing on the sending path changes.
func (s *Stream) Oldest() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head >= len(s.pending) {
		return time.Time{}, false
	}
	return time.Unix(0, s.pending[s.head].ns), true
}
