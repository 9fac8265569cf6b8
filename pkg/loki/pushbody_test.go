package loki

import (
	"bytes"
	"io"
	"math/rand"
	"testing"
	"testing/iotest"
)

// A push body goes back to the pool only when the push and every request
// reading it are done with it: a request's reader still sees the bytes
// after the push gave the body up, a second Close changes nothing, and
// releasing more often than held panics rather than let two pushes share
// an array.
func TestPushBodyReferences(t *testing.T) {
	pb := newPushBody()
	pb.write([]byte("push body bytes"))
	r := pb.reader()
	pb.release() // the push is done; the transport still reads
	if n := pb.refs.Load(); n != 1 {
		t.Fatalf("refs = %d after the push let go with a request open, want 1", n)
	}
	other := newPushBody() // cannot be pb, nor have its chunk: neither is back
	other.write([]byte("another push"))
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "push body bytes" {
		t.Fatalf("request read %q, %v", got, err)
	}
	_ = r.Close()
	_ = r.Close()
	if n := pb.refs.Load(); n != 0 {
		t.Fatalf("refs = %d after the request closed (twice), want 0", n)
	}
	defer func() {
		if recover() == nil {
			t.Error("a release beyond the references did not panic")
		}
	}()
	pb.release()
}

// A body spans chunks of the queue's memory: written in pieces of any size
// it reads back whole through a request's reader, however the reader is
// asked, and its chunks all come back once the push and the request let go.
func TestPushBodyAcrossParts(t *testing.T) {
	before, _ := chunks.Stats()
	want := make([]byte, 3*bodyPart+1234)
	rand.New(rand.NewSource(2)).Read(want)
	pb := newPushBody()
	for p := want; len(p) > 0; {
		n := min(len(p), 777)
		pb.write(p[:n])
		p = p[n:]
	}
	if len(pb.parts) != 4 || pb.size != len(want) {
		t.Fatalf("%d parts, size %d; want 4, %d", len(pb.parts), pb.size, len(want))
	}
	r := pb.reader()
	got, err := io.ReadAll(iotest.HalfReader(r))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), equal: %v", len(got), err, bytes.Equal(got, want))
	}
	if !bytes.Equal(pb.bytes(), want) {
		t.Fatal("bytes() differs from what was written")
	}
	pb.release()
	if len(pb.parts) != 4 {
		t.Fatal("chunks went back while a request still held the body")
	}
	_ = r.Close()
	if len(pb.parts) != 0 {
		t.Fatal("the chunks stayed with the body after the last reference went")
	}
	// (A late release from an earlier test may still be on its way.)
	if now, back := chunksBack(before); !back {
		t.Fatalf("%d bytes of chunks out after the body was let go, %d before", now, before)
	}
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Fatal("a reader read after Close")
	}
}
