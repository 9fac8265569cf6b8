// Package journal reads systemd journal files, read-only and in pure Go, so
// that podtail can follow what Podman's journald log driver writes without
// libsystemd or journalctl (the binary is static and runs FROM scratch with
// the journal directories mounted read-only).
//
// # Format subset
//
// The format is systemd's docs/JOURNAL_FILE_FORMAT.md (struct layouts in
// journal-def.h); this package was written from that description and
// checked against files written by systemd-journald 252, with journalctl as
// the oracle (testdata/make-fixtures.sh). Everything is little-endian, every
// object 8-byte aligned. Read are:
//
//   - the header: signature "LPKSHHRH", incompatible flags (a file with a
//     flag not listed here is refused), state (OFFLINE, ONLINE, ARCHIVED),
//     file_id, seqnum_id, header_size, the data hash table's offset and size,
//     n_entries, head/tail entry seqnum, entry_array_offset;
//   - ENTRY objects: seqnum, realtime, monotonic, boot_id, xor_hash and the
//     offsets of their DATA objects ({le64 offset, le64 hash} items, or
//     le32 offsets in COMPACT files);
//   - DATA objects: hash, next_hash_offset, the inline first entry, the
//     entry array chain and its count, and the "FIELD=value" payload at 64
//     (72 in COMPACT files), compressed with ZSTD, LZ4 (le64 size then an LZ4
//     block) or XZ when an object flag says so;
//   - ENTRY_ARRAY objects (next offset, then le64 or, COMPACT, le32 items)
//     and the DATA_HASH_TABLE (16-byte buckets, head and tail offsets).
//
// FIELD objects, the field hash table and TAG (sealing) objects are not
// needed and not read; nothing is verified cryptographically.
//
// The data hash is lookup3's hashlittle2 of the payload (the first result
// in the high half), or SipHash-2-4 keyed by the file_id when the file has
// KEYED_HASH (journald 252's default, with COMPACT and ZSTD).
//
// # Reading a file that is being written
//
// Files are mapped read-only and shared: journald writes through its own
// shared mapping, so new entries show without reading again, and a file is
// mapped again when an object lies past the mapping (journald only grows
// files, in large fallocated steps; an archived file is cut to its used
// size, never below). journald writes an entry, links it into the entry
// arrays, and only then raises n_entries (and a DATA object's n_entries), so
// the reader reads a count first and never reads an item past it. Each
// offset is checked (alignment, range, type, minimal size) before use, and a
// walk along a chain must go forward, so a corrupt file yields a FileError
// naming the file and the offset, never a panic or a loop. An entry whose
// data cannot be read is skipped with its error; a file whose lists cannot
// be walked is dropped with its error; either is reported once.
//
// # Files, order and following
//
// The roots in Options.Dirs are searched for *.journal (and *.journal~,
// files journald set aside as unclean) directly and one level down, in the
// machine-id directories. Files are told apart by device and inode, so a
// rename (rotation renames system.journal to system@….journal) keeps the
// file open and read where it was, and by file_id, so a copy is read once.
//
// A group is the files numbered by one journald: one seqnum_id, seqnums
// counted on across rotations. Within a group entries are ordered by seqnum;
// between groups by realtime. With Options.Match, each file's DATA object for
// it is looked up through the data hash table and only its entry list is
// walked, so only the groups holding it contribute. Options.After resumes
// after an entry: by seqnum in its group, by realtime elsewhere; each file is
// positioned by bisecting its entry arrays.
//
// Next never blocks: it returns false when nothing is there now, and the
// caller waits for a Watcher notification. When the files it has are read to
// their end it scans the directories again, which finds the successor of a
// rotated file and files deleted since. A file deleted (vacuumed) while open
// is still read to its end through its mapping, then closed; an archived file
// read to its end is closed. Seqnums that no file holds any more between
// After (or what was read) and the next file of the group are counted as
// gaps (Reader.Gaps), whatever they would have matched. A Reader starts no
// goroutine and is used by one goroutine at a time.
//
// Readers given one Maps (Options.Maps) share their files' mappings: a
// file is mapped once per process, however many Readers read it, so that
// its pages count once in the process's RSS.
package journal
