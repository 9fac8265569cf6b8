package journal

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Cursor says where an entry stands. Its string form is systemd's: the one
// journalctl prints as __CURSOR and accepts with --after-cursor.
type Cursor struct {
	SeqnumID  [16]byte // identifies the journald that numbered the entry
	Seqnum    uint64   // the entry's number, counted up by that journald
	BootID    [16]byte
	Monotonic uint64 // µs since boot BootID
	Realtime  uint64 // µs since the epoch
	XorHash   uint64 // XOR of the Jenkins hashes of the entry's data
}

// IsZero reports whether c is the zero Cursor ("from the start").
func (c Cursor) IsZero() bool { return c == Cursor{} }

// String returns "s=<seqnum id>;i=<seqnum>;b=<boot id>;m=<monotonic>;t=<realtime>;x=<xor hash>",
// IDs as 32 lowercase hex digits and numbers in lowercase hex.
func (c Cursor) String() string {
	b := make([]byte, 0, 140)
	b = append(b, "s="...)
	b = hex.AppendEncode(b, c.SeqnumID[:])
	b = append(b, ";i="...)
	b = strconv.AppendUint(b, c.Seqnum, 16)
	b = append(b, ";b="...)
	b = hex.AppendEncode(b, c.BootID[:])
	b = append(b, ";m="...)
	b = strconv.AppendUint(b, c.Monotonic, 16)
	b = append(b, ";t="...)
	b = strconv.AppendUint(b, c.Realtime, 16)
	b = append(b, ";x="...)
	b = strconv.AppendUint(b, c.XorHash, 16)
	return string(b)
}

// ParseCursor parses the form String returns. Keys may come in any order;
// unknown keys are ignored, as systemd does, so cursors of later versions
// still parse. At least s and i, or t, must be there for the cursor to say
// where to resume.
func ParseCursor(s string) (Cursor, error) {
	var c Cursor
	var haveS, haveI, haveT bool
	for _, item := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return Cursor{}, fmt.Errorf("journal cursor %q: item %q is not key=value", s, item)
		}
		var err error
		switch k {
		case "s":
			err, haveS = parseID(&c.SeqnumID, v), true
		case "b":
			err = parseID(&c.BootID, v)
		case "i":
			c.Seqnum, err = strconv.ParseUint(v, 16, 64)
			haveI = true
		case "m":
			c.Monotonic, err = strconv.ParseUint(v, 16, 64)
		case "t":
			c.Realtime, err = strconv.ParseUint(v, 16, 64)
			haveT = true
		case "x":
			c.XorHash, err = strconv.ParseUint(v, 16, 64)
		}
		if err != nil {
			return Cursor{}, fmt.Errorf("journal cursor %q: bad %s value %q: %w", s, k, v, err)
		}
	}
	if !(haveS && haveI) && !haveT {
		return Cursor{}, fmt.Errorf("journal cursor %q: needs s= and i=, or t=", s)
	}
	return c, nil
}

func parseID(id *[16]byte, v string) error {
	if len(v) != 32 {
		return fmt.Errorf("want 32 hex digits, have %d characters", len(v))
	}
	_, err := hex.Decode(id[:], []byte(v))
	return err
}
