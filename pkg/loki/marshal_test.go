package loki

import (
	"bytes"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/podtail/podtail/pkg/pipeline"
)

// decodeBody undoes the snappy block format as Loki does (golang/snappy).
func decodeBody(t *testing.T, body []byte) []byte {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatalf("snappy.Decode: %v", err)
	}
	return raw
}

// A batch must write exactly what the generated Marshal writes for the
// same streams (Loki decodes it with the generated code), in a body
// golang/snappy decodes, however its stages of 64 KiB fall.
func TestBatchMarshalMatchesGenerated(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	str := func(max int) string { return strings.Repeat("x", rng.Intn(max+1)) }
	times := []time.Time{
		{}, time.Unix(0, 0), time.Unix(0, 1), time.Unix(1, 0), time.Unix(-1, 5),
		time.Unix(1795579807, 519476000), time.Unix(1<<37, 999999999),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	for round := 0; round < 300; round++ {
		big := round%10 == 0 // lines long enough to cross stages
		b := newBatch(time.Now())
		var streams []push.Stream
		labels := []string{str(300), str(300), str(300)}
		for e := rng.Intn(60); e >= 0; e-- {
			en := push.Entry{Timestamp: times[rng.Intn(len(times))], Line: str(200)}
			if big {
				en.Line = str(40 << 10)
			} else if rng.Intn(20) == 0 {
				en.Line = str(3000) // larger than a first chunk: one of its own, then odd sizes
			}
			if rng.Intn(3) == 0 {
				en.Timestamp = time.Unix(rng.Int63n(1<<34)-1<<33, rng.Int63n(1e9))
			}
			for m := rng.Intn(3); m > 0; m-- {
				en.StructuredMetadata = append(en.StructuredMetadata, push.LabelAdapter{Name: str(20), Value: str(150)})
			}
			l := labels[rng.Intn(len(labels))]
			b.add(&pipeline.Entry{Labels: l, Time: en.Timestamp, Line: en.Line, Metadata: metadata(en.StructuredMetadata)})
			i := slices.IndexFunc(streams, func(s push.Stream) bool { return s.Labels == l })
			if i < 0 {
				i = len(streams)
				streams = append(streams, push.Stream{Labels: l})
			}
			streams[i].Entries = append(streams[i].Entries, en)
		}
		want, err := (&push.PushRequest{Streams: streams}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got := decodeBody(t, b.encode())
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: batch differs from Marshal:\n got %x\nwant %x", round, got, want)
		}
		// Read back, each entry is what was added.
		for i, s := range b.streams {
			j := 0
			err := s.each(func(e wireEntry) bool {
				w := streams[i].Entries[j]
				size := (&pipeline.Entry{Line: w.Line, Metadata: metadata(w.StructuredMetadata)}).Size()
				if e.ns != w.Timestamp.UnixNano() || e.line != w.Line || e.size != size {
					t.Fatalf("round %d: entry %d of stream %d read back as %d %q (%d bytes), added %d %q (%d)",
						round, j, i, e.ns, e.line, e.size, w.Timestamp.UnixNano(), w.Line, size)
				}
				j++
				return true
			})
			if err != nil || j != len(streams[i].Entries) || s.n != j {
				t.Fatalf("round %d: stream %d: read %d entries of %d (n %d): %v", round, i, j, len(streams[i].Entries), s.n, err)
			}
		}
		// Read back from the body (as an uncertain push is), each stream
		// is there with its last entry, and its message is Marshal's.
		pb := newPushBody()
		encodeBody(pb, b.streams)
		bs, err := bodyStreams(pb)
		if err != nil || len(bs) != len(streams) {
			t.Fatalf("round %d: %d streams read back from the body, want %d: %v", round, len(bs), len(streams), err)
		}
		for i, s := range bs {
			last, _, err := readEntry(s.last)
			if w := streams[i].Entries[len(streams[i].Entries)-1]; err != nil || s.labels != streams[i].Labels || last.line != w.Line || last.ns != w.Timestamp.UnixNano() {
				t.Fatalf("round %d: stream %d read back as %s, last entry %v %v", round, i, s.labels, last, err)
			}
			if want, _ := streams[i].Marshal(); !bytes.Equal(s.msg, want) {
				t.Fatalf("round %d: stream %d's message read back differs from Marshal", round, i)
			}
		}
		pb.release()
		// Filtered (as a replay check does), every other entry goes.
		var kept []push.Stream
		for i := range b.streams {
			j := 0
			if err := b.streams[i].filter(func(wireEntry) bool { j++; return j%2 == 0 }); err != nil {
				t.Fatal(err)
			}
			st := push.Stream{Labels: streams[i].Labels}
			for k := 1; k < len(streams[i].Entries); k += 2 {
				st.Entries = append(st.Entries, streams[i].Entries[k])
			}
			if len(st.Entries) > 0 {
				kept = append(kept, st)
			}
			if b.streams[i].n != len(st.Entries) {
				t.Fatalf("round %d: stream %d kept %d entries, want %d", round, i, b.streams[i].n, len(st.Entries))
			}
		}
		want, err = (&push.PushRequest{Streams: kept}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeBody(t, b.encode()); !bytes.Equal(got, want) {
			t.Fatalf("round %d: filtered batch differs from Marshal:\n got %x\nwant %x", round, got, want)
		}
		b.release() // later rounds write into its chunks, as they come back dirty from the pools
	}
}

// Chunk sizes: the pooled ones are firstChunk to maxChunk, doubling.
func TestChunkClass(t *testing.T) {
	for c, want := range map[int]int{512: -1, 1 << 10: 0, 1536: -1, 2 << 10: 1, 16 << 10: 4, 32 << 10: 5, 64 << 10: -1, 3000: -1} {
		if got := chunks.Class(c); got != want {
			t.Errorf("chunks.Class(%d) = %d, want %d", c, got, want)
		}
	}
	if c := getChunk(3000); cap(c) != 3000 || len(c) != 0 {
		t.Errorf("getChunk(3000): len %d cap %d", len(c), cap(c))
	}
}

// A time protobuf cannot carry is left out of the request and counted, and
// the entries around it go.
func TestBatchLeavesOutTimesProtobufCannotHold(t *testing.T) {
	for _, ts := range []time.Time{time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		streams := []push.Stream{{Labels: `{a="1"}`, Entries: []push.Entry{{Timestamp: ts, Line: "x"}}}}
		if _, err := (&push.PushRequest{Streams: streams}).Marshal(); err == nil {
			t.Fatalf("generated Marshal took %v; the test's premise is wrong", ts)
		}
		b := newBatch(time.Now())
		b.add(&pipeline.Entry{Labels: `{a="1"}`, Time: time.Unix(1, 0), Line: "before"})
		b.add(&pipeline.Entry{Labels: `{a="1"}`, Time: ts, Line: "x"})
		b.add(&pipeline.Entry{Labels: `{a="1"}`, Time: time.Unix(2, 0), Line: "after"})
		if b.entries != 3 || b.unencodable != 1 || b.unencodableBytes != 1 || b.streams[0].n != 2 {
			t.Errorf("%v: entries %d, unencodable %d (%d bytes), in the stream %d", ts, b.entries, b.unencodable, b.unencodableBytes, b.streams[0].n)
		}
	}
}

// metadata is Loki's structured metadata as podtail's.
func metadata(l push.LabelsAdapter) []pipeline.Label {
	var out []pipeline.Label
	for _, a := range l {
		out = append(out, pipeline.Label{Name: a.Name, Value: a.Value})
	}
	return out
}
