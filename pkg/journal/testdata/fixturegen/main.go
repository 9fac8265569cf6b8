// Command fixturegen feeds the journald that make-fixtures.sh starts and
// post-processes the files it writes. It is test tooling, not part of
// podtail:
//
//	fixturegen send -socket PATH -scenario basic|conmon|seq|bench [-from N] [-n N]
//	fixturegen craft -in FILE -out FILE -algo lz4|xz
//	fixturegen id NAME
//
// send writes entries over journald's native protocol, shaped like those
// conmon writes for Podman's journald log driver (MESSAGE, PRIORITY,
// CONTAINER_ID_FULL, CONTAINER_ID, CONTAINER_NAME, SYSLOG_IDENTIFIER,
// IMAGE_NAME, CONTAINER_PARTIAL_MESSAGE) plus a few odd ones (multi-line,
// binary, repeated and large fields).
//
// craft copies a journal file, re-compressing each ZSTD-compressed DATA
// payload with LZ4 (journald's form: le64 size, then an LZ4 block) or XZ and
// setting the header flag (see recompress): journald 252 as built by Debian only writes ZSTD,
// so these variants cannot be had from it; journalctl, which reads all
// three, is still the oracle for the result.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

func main() {
	log.SetFlags(0)
	if len(os.Args) < 2 {
		log.Fatal("usage: fixturegen send|craft|id ...")
	}
	switch os.Args[1] {
	case "send":
		send(os.Args[2:])
	case "craft":
		craft(os.Args[2:])
	case "id":
		fmt.Println(containerID(os.Args[2]))
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

// containerID is a stable 64-hex ID for a fixture container name.
func containerID(name string) string {
	sum := sha256.Sum256([]byte("podtail-fixture-" + name))
	return hex.EncodeToString(sum[:])
}

type field struct{ name, value string }

func container(name string, prio int, msg string, extra ...field) []field {
	id := containerID(name)
	f := []field{
		{"MESSAGE", msg},
		{"PRIORITY", fmt.Sprint(prio)},
		{"CONTAINER_ID_FULL", id},
		{"CONTAINER_ID", id[:12]},
		{"CONTAINER_NAME", name},
		{"SYSLOG_IDENTIFIER", name},
		{"IMAGE_NAME", "localhost/podtail-fixture:latest"},
	}
	return append(f, extra...)
}

func send(args []string) {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	socket := fs.String("socket", "/run/systemd/journal/socket", "journald native socket")
	scenario := fs.String("scenario", "basic", "basic, conmon, seq or bench")
	from := fs.Int("from", 0, "first sequence number (seq)")
	n := fs.Int("n", 10, "number of entries (seq, bench)")
	fs.Parse(args)

	var entries [][]field
	switch *scenario {
	case "basic":
		entries = basic()
	case "conmon":
		entries = conmon()
	case "seq":
		for i := *from; i < *from+*n; i++ {
			name := "a"
			if i%3 == 2 {
				name = "b"
			}
			entries = append(entries, container(name, 6, fmt.Sprintf("seq %d", i), field{"SEQ", fmt.Sprint(i)}))
		}
	case "bench":
		for i := 0; i < *n; i++ {
			name, prio := "bench", 6
			if i%51 == 50 {
				name = "other"
			}
			if i%7 == 0 {
				prio = 3
			}
			entries = append(entries, container(name, prio,
				fmt.Sprintf("bench line %06d: GET /api/v1/items?page=%d 200 %dms", i, i%97, i%13)))
		}
	default:
		log.Fatalf("unknown scenario %q", *scenario)
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: *socket, Net: "unixgram"})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	for _, e := range entries {
		if _, err := conn.Write(encode(e)); err != nil {
			log.Fatal(err)
		}
	}
}

func basic() [][]field {
	large := strings.Repeat("0123456789abcdef ", 180) // 3060 bytes: compressed
	var mixed strings.Builder
	for i := 0; mixed.Len() < 700; i++ {
		fmt.Fprintf(&mixed, "%x-", sha256.Sum256([]byte{byte(i)}))
	}
	return [][]field{
		container("a", 6, "hello from a"),
		container("b", 6, "hello from b"),
		container("a", 6, "line one\nline two\n\tindented line three"),
		container("a", 6, large),
		container("b", 6, "partial start ", field{"CONTAINER_PARTIAL_MESSAGE", "true"}),
		container("b", 6, "of a long line"),
		container("a", 3, "binary \x00\x01\xff bytes"),
		container("a", 6, "repeated field", field{"FOO", "1"}, field{"FOO", "2"}),
		container("a", 6, ""),
		container("b", 4, "grüße ✓ UTF-8"),
		container("a", 6, mixed.String()),
		container("c", 3, "from c to stderr"),
		container("a", 6, "large extra field", field{"EXTRA", strings.Repeat("x", 2000)}),
		container("a", 6, "same large extra field again", field{"EXTRA", strings.Repeat("x", 2000)}),
		{{"MESSAGE", "not a container"}, {"PRIORITY", "5"}, {"SYSLOG_IDENTIFIER", "fixture"}},
		container("a", 6, "last from a"),
	}
}

// conmon is one container's output as conmon 2.1 writes it: full lines end
// with the newline, a line split at conmon's buffer comes as partial entries
// (no newline, CONTAINER_PARTIAL_MESSAGE=true) and then its last part, and a
// stdout and a stderr line being split interleave.
func conmon() [][]field {
	partial := field{"CONTAINER_PARTIAL_MESSAGE", "true"}
	return [][]field{
		container("d", 6, "one\n"),
		container("d", 6, "two-a ", partial),
		container("d", 3, "err-1\n"),
		container("d", 3, "err-2a ", partial),
		container("d", 6, "two-b ", partial),
		container("d", 6, "two-c\n"),
		container("d", 3, "err-2b\n"),
		container("d", 6, "three\n"),
	}
}

// encode renders an entry in journald's native protocol: NAME=value lines,
// or for a value holding a newline NAME, newline, le64 length, value, newline.
func encode(e []field) []byte {
	var b bytes.Buffer
	for _, f := range e {
		if !strings.Contains(f.value, "\n") {
			fmt.Fprintf(&b, "%s=%s\n", f.name, f.value)
			continue
		}
		b.WriteString(f.name)
		b.WriteByte('\n')
		binary.Write(&b, binary.LittleEndian, uint64(len(f.value)))
		b.WriteString(f.value)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func craft(args []string) {
	fs := flag.NewFlagSet("craft", flag.ExitOnError)
	in := fs.String("in", "", "journal file to read")
	out := fs.String("out", "", "journal file to write")
	algo := fs.String("algo", "lz4", "lz4 or xz")
	fs.Parse(args)
	b, err := os.ReadFile(*in)
	if err != nil {
		log.Fatal(err)
	}
	n, err := recompress(b, *algo)
	if err != nil {
		log.Fatal(err)
	}
	if n == 0 {
		log.Fatal("no ZSTD object to re-compress")
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: %d objects re-compressed with %s", *out, n, *algo)
}

// recompress rewrites the ZSTD DATA payloads of a journal file. Objects
// are walked in file order (each starts 8-aligned after the previous one,
// the first right after the header). A payload that fits where the old one
// was is written in place, the object's size lowered and the rest left as
// zeros, which no reader looks at; one that does not fit is written as a
// new object after the last one, and every reference to the old object
// (entry items, the data hash table and hash chains, field chains) is
// pointed at the new one.
func recompress(b []byte, algo string) (int, error) {
	le := binary.LittleEndian
	incompat := le.Uint32(b[12:])
	compact := incompat&16 != 0
	payloadAt := uint64(64)
	if compact {
		payloadAt = 72
	}
	headerSize := le.Uint64(b[88:])
	tail := le.Uint64(b[136:])
	dec, err := zstd.NewReader(nil)
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	type object struct {
		off, size uint64
		typ       byte
	}
	var objs []object
	for off := headerSize; off != 0 && off <= tail; {
		size := le.Uint64(b[off+8:])
		if size < 16 {
			return 0, fmt.Errorf("object at %#x: size %d", off, size)
		}
		objs = append(objs, object{off, size, b[off]})
		off += (size + 7) &^ 7
	}
	last := objs[len(objs)-1]
	end := (last.off + last.size + 7) &^ 7
	moved := map[uint64]uint64{}
	n := 0
	for _, o := range objs {
		if o.typ != 1 || b[o.off+1] != 4 {
			continue
		}
		plain, err := dec.DecodeAll(b[o.off+payloadAt:o.off+o.size], nil)
		if err != nil {
			return n, fmt.Errorf("object at %#x: %w", o.off, err)
		}
		comp, flag, err := compress(plain, algo)
		if err != nil {
			return n, err
		}
		size := payloadAt + uint64(len(comp))
		at := o.off
		if size > o.size {
			at = end
			if at+size > uint64(len(b)) {
				return n, fmt.Errorf("no room for object at %#x", o.off)
			}
			copy(b[at:at+payloadAt], b[o.off:o.off+payloadAt])
			end = (at + size + 7) &^ 7
			moved[o.off] = at
			le.PutUint64(b[136:], at)                   // tail_object_offset
			le.PutUint64(b[144:], le.Uint64(b[144:])+1) // n_objects
		}
		clear(b[at+payloadAt : at+max(size, o.size)])
		copy(b[at+payloadAt:], comp)
		b[at+1] = flag
		le.PutUint64(b[at+8:], size)
		n++
	}
	repoint := func(at uint64, width int) {
		var v uint64
		if width == 4 {
			v = uint64(le.Uint32(b[at:]))
		} else {
			v = le.Uint64(b[at:])
		}
		if nv, ok := moved[v]; ok {
			if width == 4 {
				le.PutUint32(b[at:], uint32(nv))
			} else {
				le.PutUint64(b[at:], nv)
			}
		}
	}
	for _, o := range objs {
		switch o.typ {
		case 1: // DATA: next_hash_offset, next_field_offset
			repoint(o.off+24, 8)
			repoint(o.off+32, 8)
		case 2: // FIELD: head_data_offset
			repoint(o.off+32, 8)
		case 3: // ENTRY items
			if compact {
				for i := o.off + 64; i+4 <= o.off+o.size; i += 4 {
					repoint(i, 4)
				}
			} else {
				for i := o.off + 64; i+16 <= o.off+o.size; i += 16 {
					repoint(i, 8)
				}
			}
		case 4: // DATA_HASH_TABLE: head and tail of each bucket
			for i := o.off + 16; i+8 <= o.off+o.size; i += 8 {
				repoint(i, 8)
			}
		}
	}
	hdrFlag := map[string]uint32{"xz": 1, "lz4": 2}[algo]
	le.PutUint32(b[12:], incompat|hdrFlag)
	return n, nil
}

func compress(p []byte, algo string) ([]byte, byte, error) {
	switch algo {
	case "lz4":
		out := make([]byte, 8+lz4.CompressBlockBound(len(p)))
		binary.LittleEndian.PutUint64(out, uint64(len(p)))
		var c lz4.Compressor
		k, err := c.CompressBlock(p, out[8:])
		if err != nil || k == 0 {
			return nil, 0, fmt.Errorf("lz4: %d, %v", k, err)
		}
		return out[:8+k], 2, nil
	case "xz":
		var buf bytes.Buffer
		w, err := xz.WriterConfig{CheckSum: xz.None}.NewWriter(&buf)
		if err != nil {
			return nil, 0, err
		}
		w.Write(p)
		if err := w.Close(); err != nil {
			return nil, 0, err
		}
		return buf.Bytes(), 1, nil
	}
	return nil, 0, fmt.Errorf("unknown algorithm %q", algo)
}
