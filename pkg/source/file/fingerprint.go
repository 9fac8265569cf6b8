package file

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// FingerprintSize is how many leading bytes identify a file.
const FingerprintSize = 1024

// Fingerprint identifies a file by its first bytes: "<n>:<hash of n bytes>".
// Reading only starts once a file holds a whole line, and the first line of
// an app's log carries a time, so n bytes are enough to tell files apart.
type Fingerprint struct {
	N    int
	Hash string
}

// NewFingerprint fingerprints head (at most FingerprintSize bytes are used).
func NewFingerprint(head []byte) Fingerprint {
	if len(head) > FingerprintSize {
		head = head[:FingerprintSize]
	}
	return Fingerprint{N: len(head), Hash: hash(head)}
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

// String is the stored form.
func (f Fingerprint) String() string { return strconv.Itoa(f.N) + ":" + f.Hash }

// ParseFingerprint reads the stored form.
func ParseFingerprint(s string) (Fingerprint, error) {
	n, h, ok := strings.Cut(s, ":")
	if !ok {
		return Fingerprint{}, fmt.Errorf("fingerprint %q: no ':'", s)
	}
	i, err := strconv.Atoi(n)
	if err != nil || i <= 0 || i > FingerprintSize {
		return Fingerprint{}, fmt.Errorf("fingerprint %q: bad length", s)
	}
	return Fingerprint{N: i, Hash: h}, nil
}

// Matches reports whether a file starting with head is the file f was taken
// of: head holds at least f.N bytes and they hash alike.
func (f Fingerprint) Matches(head []byte) bool {
	return f.N > 0 && len(head) >= f.N && hash(head[:f.N]) == f.Hash
}
