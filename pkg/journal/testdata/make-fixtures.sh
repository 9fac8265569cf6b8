#!/bin/bash
# make-fixtures.sh regenerates the journal fixtures of pkg/journal with a real
# systemd-journald, and the golden files the tests compare against, printed by
# journalctl (the oracle: tests never run it themselves).
#
# Needs root, /lib/systemd/systemd-journald and journalctl (written with
# systemd 252 as packaged by Debian 12), zstd and go.
#
# What it runs: journald in its own namespace "podtailfx" (sockets under
# /run/systemd/journal.podtailfx, files under /run/log/journal/<machine-id>.podtailfx,
# settings from a drop-in under /run/systemd/journald@podtailfx.conf.d), so a
# journald already serving the host is neither used nor disturbed. Entries are
# sent over the native socket by fixturegen (./fixturegen). Each variant
# starts a journald, sends, syncs, copies the files, stops that journald (by
# its PID) and removes its files; the drop-in and sockets go at the end.
#
# Fixtures (stored zstd-compressed: journald allocates files in large sparse
# chunks, mostly zeros):
#   compact-keyed-zstd.journal   journald 252's defaults: COMPACT, KEYED_HASH (siphash24),
#                                ZSTD for payloads over 512 bytes; copied while ONLINE
#   regular-keyed.journal        SYSTEMD_JOURNAL_COMPACT=0; closed (OFFLINE)
#   regular-jenkins.journal      SYSTEMD_JOURNAL_COMPACT=0 SYSTEMD_JOURNAL_KEYED_HASH=0
#   compact-lz4.journal          compact-keyed-zstd with its ZSTD payloads re-compressed
#   regular-xz.journal           regular-jenkins with its ZSTD payloads re-compressed
#                                (journald 252 here only writes ZSTD: see fixturegen craft)
#   rotated/system@….journal     a rotation: the archived file and the new
#   rotated/system.journal       system.journal, seqnums running on
#   bench.journal                10,200 entries, 10,000 of container "bench"
#   conmon.journal               container "d" as conmon writes it, partial entries
#                                of stdout and stderr interleaved
# Golden files: NAME.export (journalctl -o export), NAME.match-X (the __CURSOR
# lines of journalctl --file=NAME CONTAINER_ID_FULL=<id of X>), bench.golden
# (count and sha256 of the match cursors, too many to store).
set -euo pipefail
cd "$(dirname "$0")"

NS=podtailfx
MID=$(cat /etc/machine-id)
JDIR=/run/log/journal/$MID.$NS
SOCKDIR=/run/systemd/journal.$NS
CONF=/run/systemd/journald@$NS.conf.d
WORK=$(mktemp -d)
GEN=$WORK/fixturegen
JPID=
[ -d /run/log/journal ] && HAD_RUNLOG=1 || HAD_RUNLOG=

cleanup() {
	if [ -n "$JPID" ]; then kill "$JPID" 2>/dev/null || true; wait "$JPID" 2>/dev/null || true; fi
	rm -rf "$JDIR" "$SOCKDIR" "$CONF" "$WORK"
	if [ -z "$HAD_RUNLOG" ]; then rmdir /run/log/journal 2>/dev/null || true; fi # made here, and empty
}
trap cleanup EXIT

go build -o "$GEN" ./fixturegen
mkdir -p "$CONF"

# start MAXSIZE [VAR=value...]: a journald for the namespace with that file size limit.
start() {
	local max=$1
	shift
	printf '[Journal]\nStorage=volatile\nRateLimitBurst=0\nRuntimeMaxFileSize=%s\nForwardToSyslog=no\n' "$max" >"$CONF/fixtures.conf"
	rm -rf "$JDIR" "$SOCKDIR"
	env "$@" /lib/systemd/systemd-journald "$NS" >"$WORK/journald.log" 2>&1 &
	JPID=$!
	for _ in $(seq 100); do
		[ -S "$SOCKDIR/socket" ] && [ -f "$JDIR/system.journal" ] && return 0
		sleep 0.1
	done
	cat "$WORK/journald.log"
	echo "journald did not start" >&2
	exit 1
}

stop() {
	kill "$JPID"
	wait "$JPID" || true
	JPID=
}

send() { "$GEN" send -socket "$SOCKDIR/socket" "$@"; }
sync_journal() { journalctl --namespace="$NS" --sync; }

# golden NAME FILE: the oracle's view of FILE.
golden() {
	local name=$1 file=$2
	journalctl --file="$file" -o export >"$name.export"
	for c in a b c; do
		journalctl --file="$file" -o export "CONTAINER_ID_FULL=$("$GEN" id $c)" | grep -a '^__CURSOR=' >"$name.match-$c" || true
	done
}

store() { # store FILE NAME: compress FILE into NAME.journal.zst
	zstd -q -19 -f "$1" -o "$2.journal.zst"
}

rm -rf ./*.journal.zst ./*.export ./*.match-? rotated bench.golden

# 1. Defaults, copied while journald runs (state ONLINE).
start 1M
send -scenario basic
sync_journal
cp "$JDIR/system.journal" "$WORK/compact-keyed-zstd.journal"
stop
golden compact-keyed-zstd "$WORK/compact-keyed-zstd.journal"
store "$WORK/compact-keyed-zstd.journal" compact-keyed-zstd

# 2. Regular (non-compact) layout, still keyed; closed by journald (OFFLINE).
start 1M SYSTEMD_JOURNAL_COMPACT=0
send -scenario basic
sync_journal
stop
cp "$JDIR/system.journal" "$WORK/regular-keyed.journal"
golden regular-keyed "$WORK/regular-keyed.journal"
store "$WORK/regular-keyed.journal" regular-keyed

# 3. Regular layout with the Jenkins hash.
start 1M SYSTEMD_JOURNAL_COMPACT=0 SYSTEMD_JOURNAL_KEYED_HASH=0
send -scenario basic
sync_journal
stop
cp "$JDIR/system.journal" "$WORK/regular-jenkins.journal"
golden regular-jenkins "$WORK/regular-jenkins.journal"
store "$WORK/regular-jenkins.journal" regular-jenkins

# 4. LZ4 and XZ payloads, crafted from the above.
"$GEN" craft -in "$WORK/compact-keyed-zstd.journal" -out "$WORK/compact-lz4.journal" -algo lz4
golden compact-lz4 "$WORK/compact-lz4.journal"
store "$WORK/compact-lz4.journal" compact-lz4
"$GEN" craft -in "$WORK/regular-jenkins.journal" -out "$WORK/regular-xz.journal" -algo xz
golden regular-xz "$WORK/regular-xz.journal"
store "$WORK/regular-xz.journal" regular-xz

# 5. A rotation between two batches.
start 1M
send -scenario seq -from 0 -n 30
sync_journal
journalctl --namespace="$NS" --rotate
send -scenario seq -from 30 -n 30
sync_journal
mkdir -p rotated "$WORK/rotated"
cp "$JDIR"/*.journal "$WORK/rotated/"
stop
for f in "$WORK"/rotated/*.journal; do
	name=rotated/$(basename "$f" .journal)
	golden "$name" "$f"
	store "$f" "$name"
done
# The two files read as one journal, as journalctl --directory shows it.
journalctl --directory="$WORK/rotated" -o export | grep -a '^__CURSOR=' >rotated/all.cursors

# 6. Many entries, for the benchmark.
start 32M # a data hash table large enough not to rotate (75% full triggers it)
send -scenario bench -n 10200
sync_journal
stop
cp "$JDIR/system.journal" "$WORK/bench.journal"
journalctl --file="$WORK/bench.journal" -o export "CONTAINER_ID_FULL=$("$GEN" id bench)" | grep -a '^__CURSOR=' >"$WORK/bench.cursors"
{
	echo "count $(wc -l <"$WORK/bench.cursors")"
	echo "sha256 $(sha256sum <"$WORK/bench.cursors" | cut -d' ' -f1)"
	echo "entries $(journalctl --file="$WORK/bench.journal" -o export | grep -a -c '^__CURSOR=')"
} >bench.golden
store "$WORK/bench.journal" bench

# 7. One container's output as conmon writes it, with a stdout and a stderr
# line split into partial entries that interleave (pkg/source's reader tests).
start 1M
send -scenario conmon
sync_journal
stop
cp "$JDIR/system.journal" "$WORK/conmon.journal"
journalctl --file="$WORK/conmon.journal" -o export "CONTAINER_ID_FULL=$("$GEN" id d)" >conmon.export
store "$WORK/conmon.journal" conmon

ls -la . rotated
du -sh .
