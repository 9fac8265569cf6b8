package loki

import (
	"bytes"
	"context"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// A push body reaches Loki whole through copyConn, and its copy onto the
// connection takes no buffer of its own: twenty pushes of 300 KB allocate
// less than one 32 KiB copy buffer each (the transport's own copy made
// one per push, 45 % of what podtail allocated over 100 files).
func TestPushBodyCopiedWithoutBufferPerPush(t *testing.T) {
	want := make([]byte, 300<<10)
	rand.New(rand.NewSource(3)).Read(want)
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = got[:0]
		buf := bytes.NewBuffer(got)
		_, _ = buf.ReadFrom(r.Body)
		got = buf.Bytes()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	c, _ := startClient(t, testConfig(srv.URL))
	pb := newPushBody()
	defer pb.release()
	pb.write(want)
	post := func() {
		if err := c.post(context.Background(), "t", pb); err != nil {
			t.Fatal(err)
		}
	}
	post()
	if !bytes.Equal(got, want) {
		t.Fatalf("Loki got %d bytes, not the %d sent", len(got), len(want))
	}
	if raceEnabled {
		return
	}
	const n = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		post()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per >= 32<<10 {
		t.Errorf("a push allocated %d bytes (client and test server together): a copy buffer per push", per)
	}
}
