package loki

import (
	"bytes"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
)

// marshalPush must write exactly what the generated Marshal writes: Loki
// decodes it with the generated code.
func TestMarshalPushMatchesGenerated(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	str := func(max int) string { return strings.Repeat("x", rng.Intn(max+1)) }
	times := []time.Time{
		{}, time.Unix(0, 0), time.Unix(0, 1), time.Unix(1, 0), time.Unix(-1, 5),
		time.Unix(1795579807, 519476000), time.Unix(1<<37, 999999999),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	for round := 0; round < 200; round++ {
		var streams []push.Stream
		for s := rng.Intn(4); s >= 0; s-- {
			st := push.Stream{Labels: str(300)}
			if rng.Intn(4) == 0 {
				st.Hash = rng.Uint64() >> uint(rng.Intn(64))
			}
			for e := rng.Intn(5); e > 0; e-- {
				en := push.Entry{Timestamp: times[rng.Intn(len(times))], Line: str(200)}
				if rng.Intn(3) == 0 {
					en.Timestamp = time.Unix(rng.Int63n(1<<34)-1<<33, rng.Int63n(1e9))
				}
				for m := rng.Intn(3); m > 0; m-- {
					en.StructuredMetadata = append(en.StructuredMetadata, push.LabelAdapter{Name: str(20), Value: str(150)})
				}
				st.Entries = append(st.Entries, en)
			}
			streams = append(streams, st)
		}
		want, err := (&push.PushRequest{Streams: streams}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalPush(streams)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: marshalPush differs from Marshal:\n got %x\nwant %x", round, got, want)
		}
		putBuf(got)
	}
}

func TestMarshalPushRefusesTimesProtobufCannotHold(t *testing.T) {
	for _, ts := range []time.Time{time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		streams := []push.Stream{{Labels: `{a="1"}`, Entries: []push.Entry{{Timestamp: ts, Line: "x"}}}}
		if _, err := (&push.PushRequest{Streams: streams}).Marshal(); err == nil {
			t.Fatalf("generated Marshal took %v; the test's premise is wrong", ts)
		}
		if _, err := marshalPush(streams); err == nil {
			t.Errorf("marshalPush took %v, which the generated code refuses", ts)
		}
	}
}
