#!/usr/bin/env bash
# The test bed: make this machine able to run podtail's e2e tests and demo,
# then run the given command with the test bed's environment.
#
#   e2e/testbed/testbed.sh go test ./e2e/...
#
# It installs what a fresh Debian machine lacks (Podman from Debian's
# packages), writes a containers.conf of its own and points CONTAINERS_CONF
# at it (never editing /etc), builds a real Loki v3 from its Go module
# (e2e/lokibuild, cached by the hash of its sources), and makes a busybox
# image locally (no registry is reachable). Everything slow is cached under
# $PODTAIL_CACHE, and rebuilt when the cache is missing.
#
# PODTAIL_PROFILE picks the Podman the tests meet:
#
#   podman4-file      (default) Debian 12's Podman 4.3.1 with its defaults on
#                     a host without systemd: k8s-file logs, file events.
#   podman5-journald  Podman 5.8.2 built from its Go module (e2e/podmanbuild),
#                     logging and recording events to a standalone
#                     systemd-journald, as Podman does by default on users'
#                     systemd hosts. It has storage, a database and a lock
#                     directory of its own, apart from 4.3.1's.
#
#   PODTAIL_PROFILE=podman5-journald e2e/testbed/testbed.sh go test ./e2e/...
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PODTAIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podtail}
mkdir -p "$cache"
profile=${PODTAIL_PROFILE:-podman4-file}

log() { printf 'testbed: %s\n' "$*" >&2; }

case $profile in
podman4-file | podman5-journald) ;;
*)
	log "unknown PODTAIL_PROFILE=$profile (podman4-file or podman5-journald)"
	exit 2
	;;
esac

# Podman from Debian. runc because crun cannot run containers on these VMs
# (cgroup hybrid mode, no CAP_SYS_RESOURCE): see containers.conf below.
install_podman() {
	local need=()
	for cmd in podman runc busybox; do
		command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
	done
	[ -e /bin/busybox ] || need+=(busybox)
	if [ ${#need[@]} -eq 0 ]; then
		return
	fi
	log "installing podman runc busybox-static (missing: ${need[*]})"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq podman runc busybox-static >/dev/null
}

# Debian's logrotate, which the e2e tests run on app log files (its
# copytruncate and create modes, with compression) with a configuration and
# state file of their own: not the host's, and no cron job runs it.
install_logrotate() {
	if command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ]; then
		return
	fi
	log "installing logrotate"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=300 update -qq
	apt-get install -y -qq -o DPkg::Lock::Timeout=300 logrotate >/dev/null
}

# Debian's Chromium, for the status page's browser test (e2e/status_test.go:
# headless, driven over the DevTools protocol). It runs in the podman4-file
# profile only. ~80 s on a machine without it (121 packages, measured), nothing
# once installed; it overlaps Loki's build like the rest of apt.
install_chromium() {
	if [ -x /usr/bin/chromium ]; then
		return
	fi
	log "installing chromium (the status page's browser test)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=300 update -qq
	apt-get install -y -qq -o DPkg::Lock::Timeout=300 chromium >/dev/null
}

# Debian's nginx, the gateway in front of the distributed Loki
# (e2e/testbed/gateway.go, e2e/distributed_test.go) and what contrib/check.sh
# checks contrib/loki/distributed/gateway.conf with (nginx -t). The tests run
# it as a plain process with a prefix and configuration of their own. The
# package's own nginx is not started: without systemd, invoke-rc.d's policy
# denies it (measured); a host whose policy allows it gets Debian's default
# site on port 80, which nothing here uses.
install_nginx() {
	if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
		return
	fi
	log "installing nginx-light (the distributed Loki's gateway)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=300 update -qq
	apt-get install -y -qq -o DPkg::Lock::Timeout=300 nginx-light >/dev/null
}

# A containers.conf carried by the test bed. It makes containers run on
# these VMs; it is a property of the test machines, not something podtail
# needs on users' hosts.
write_containers_conf() {
	export CONTAINERS_CONF="$cache/containers.conf"
	cat >"$CONTAINERS_CONF" <<-'EOF'
		[containers]
		default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
		[engine]
		runtime = "runc"
	EOF
}

# Loki from its Go module, cached by the hash of the build module's sources.
build_loki() {
	local src="$repo/e2e/lokibuild" sum bin
	sum=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
	bin="$cache/loki-$sum"
	if [ ! -x "$bin" ]; then
		log "building Loki from its Go module (cold: ~5 min, ~2.3 GB memory); cache: $bin"
		local start=$SECONDS
		# -s -w: no symbol table or DWARF (a test Loki is not debugged), a shorter link.
		(cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -ldflags "-s -w" -o "$bin.tmp" .)
		mv "$bin.tmp" "$bin"
		log "Loki built in $((SECONDS - start)) s"
	fi
	export PODTAIL_LOKI_BIN="$bin"
}

# Where Podman 5.8.2 goes: a directory of its own holding only `podman`, so
# putting it first in PATH changes nothing else. Keyed by the hash of the
# build module's sources like Loki.
podman5_dir() {
	local src="$repo/e2e/podmanbuild"
	printf '%s/podman5-%s' "$cache" \
		"$(cat "$src/go.mod" "$src/go.sum" "$src/tools.go" | sha256sum | cut -c1-16)"
}

# The podman5-journald profile runs Podman 5.8.2 with Debian's helpers:
# Debian's podman package brings conmon 2.1.6, netavark, aardvark-dns and
# catatonit (Podman 5 finds them in /usr/lib/podman and /usr/libexec/podman).
# The -dev packages are needed only while Podman is being built: a warm cache
# does not ask for them. Only what is missing is installed; apt waits for a
# lock held by a concurrent apt rather than failing.
install_podman5_deps() {
	local need=()
	command -v podman >/dev/null 2>&1 || need+=(podman)
	command -v conmon >/dev/null 2>&1 || need+=(conmon)
	command -v runc >/dev/null 2>&1 || need+=(runc)
	[ -e /bin/busybox ] || need+=(busybox-static)
	command -v journalctl >/dev/null 2>&1 || need+=(systemd)
	if [ ! -x "$(podman5_dir)/podman" ]; then
		command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
		command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
		[ -e /usr/include/seccomp.h ] || need+=(libseccomp-dev)
		[ -e /usr/include/systemd/sd-journal.h ] || need+=(libsystemd-dev)
	fi
	if [ ${#need[@]} -eq 0 ]; then
		return
	fi
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=300 update -qq
	apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
}

# Podman 5.8.2 from its Go module. No 4.9 or 5.x package exists for Debian 12,
# and `go install ...@v5.8.2` is refused by the module proxy, hence the
# wrapper module. cgo and the systemd tag are what make the journald log
# driver and events backend exist at all; seccomp as in distributions'
# builds; the btrfs graph driver needs headers Debian does not have by
# default, and openpgp avoids gpgme.
build_podman5() {
	local src="$repo/e2e/podmanbuild" dir bin
	dir=$(podman5_dir)
	bin="$dir/podman"
	if [ ! -x "$bin" ]; then
		log "building Podman 5.8.2 from its Go module (cold: ~1.5-6 min); cache: $bin"
		local start=$SECONDS
		mkdir -p "$dir"
		# -s -w: no symbol table or DWARF (a test Podman is not debugged), a shorter link.
		(cd "$src" && CGO_ENABLED=1 GOFLAGS=-mod=readonly go build \
			-tags "seccomp systemd exclude_graphdriver_btrfs containers_image_openpgp" \
			-ldflags "-s -w" -o "$bin.tmp" github.com/containers/podman/v5/cmd/podman)
		mv "$bin.tmp" "$bin"
		log "Podman 5.8.2 built in $((SECONDS - start)) s"
	fi
	# First in PATH: the tests' exec.Command("podman"), the demo and the
	# user's command all meet 5.8.2. conmon's exit command names the binary
	# by its full path, so container cleanup runs 5.8.2 too.
	export PATH="$dir:$PATH"
}

# Podman 5.8.2's own storage and configuration. 5.8 keeps its database in
# SQLite and refuses to create a BoltDB one, so it cannot share 4.3.1's
# graphroot; a separate root also keeps the two versions' containers and
# images out of each other's listings.
write_podman5_conf() {
	export CONTAINERS_STORAGE_CONF="$cache/storage-podman5.conf"
	cat >"$CONTAINERS_STORAGE_CONF" <<-'EOF'
		[storage]
		driver = "overlay"
		graphroot = "/var/lib/podtail-podman5"
		runroot = "/run/podtail-podman5"
	EOF
	# default_ulimits and runc: the test machines' workarounds, as in the
	# 4.3.1 profile. journald for logs and events: what Podman picks on a
	# systemd host; here PID 1 is not systemd, so it must be named.
	# tmp_dir and file locks: 4.3.1 keeps its "alive" marker in /run/libpod
	# and its locks in /dev/shm/libpod_lock. Shared, whichever version starts
	# first after a boot would refresh (free) the other's locks or skip its
	# own refresh. The network (netavark, ipam db in /run/containers/networks)
	# is shared on purpose: rootful libpod instances coordinate through it,
	# and Debian's netavark 1.4 works with 5.8.2, so containers keep the
	# default bridge network as on users' hosts.
	export CONTAINERS_CONF="$cache/containers-podman5.conf"
	cat >"$CONTAINERS_CONF" <<-'EOF'
		[containers]
		default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
		log_driver = "journald"
		[engine]
		runtime = "runc"
		events_logger = "journald"
		tmp_dir = "/run/podtail-podman5/libpod"
		lock_type = "file"
	EOF
	# cgroup v1 is all these VMs have; 5.x warns about it on every command,
	# on stderr the tests read.
	export PODMAN_IGNORE_CGROUPSV1_WARNING=1
}

# A systemd-journald of its own: with no systemd as PID 1 nothing starts one,
# and it starts standalone, creating /run/systemd/journal/{socket,stdout,
# dev-log} itself. It must outlive this script's exec and the test run (the
# tests read what containers wrote), so it runs detached in a session of its
# own, and a later run reuses it. The match is on the whole command line: a
# namespaced instance (`systemd-journald NAME`, its sockets in
# /run/systemd/journal.NAME) is not the one Podman writes to, and
# `pgrep -x systemd-journald` never matches (the kernel keeps 15 characters of
# a process name). It reads /etc/systemd/journald.conf as users' hosts do
# (rate limits included); without a flush request the journal stays volatile
# in /run/log/journal.
start_journald() {
	local journald
	# Two test beds starting at once would each start one; the second would
	# take the sockets over from the first.
	exec 9>"$cache/journald.lock"
	flock 9
	if pgrep -xf '(/usr)?/lib/systemd/systemd-journald' >/dev/null; then
		exec 9>&-
		return
	fi
	journald=/lib/systemd/systemd-journald
	[ -x "$journald" ] || journald=/usr/lib/systemd/systemd-journald
	# journald refuses to start without a machine id (it names the journal
	# directory).
	[ -s /etc/machine-id ] || systemd-machine-id-setup >/dev/null
	mkdir -p /run/systemd/journal
	# Sockets left by a journald that died: waiting for them would say ready
	# before the new one listens.
	rm -f /run/systemd/journal/socket /run/systemd/journal/stdout \
		/run/systemd/journal/dev-log /run/systemd/journal/io.systemd.journal
	log "starting $journald (log: $cache/journald.log)"
	# 9>&-: journald must not hold the lock for the rest of its life.
	setsid nohup "$journald" </dev/null >>"$cache/journald.log" 2>&1 9>&- &
	for _ in $(seq 50); do
		if [ -S /run/systemd/journal/socket ]; then
			exec 9>&-
			return
		fi
		sleep 0.1
	done
	log "systemd-journald did not create /run/systemd/journal/socket in 5 s:"
	tail -n 20 "$cache/journald.log" >&2 || true
	exit 1
}

# A busybox image made from the static busybox binary: podman import of a
# rootfs tarball takes ~0.3 s and needs no registry.
make_image() {
	export PODTAIL_TEST_IMAGE=localhost/podtail-busybox:latest
	if podman image exists "$PODTAIL_TEST_IMAGE"; then
		return
	fi
	log "making $PODTAIL_TEST_IMAGE"
	local root
	root=$(mktemp -d)
	mkdir -p "$root/bin" "$root/tmp" "$root/etc"
	cp /bin/busybox "$root/bin/busybox"
	for applet in sh ash cat echo seq sleep printf yes head tail date wc usleep true false env ls; do
		ln -s busybox "$root/bin/$applet"
	done
	echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
	tar -C "$root" -c . | podman import --change 'CMD ["/bin/sh"]' - "$PODTAIL_TEST_IMAGE" >/dev/null
	rm -rf "$root"
}

case $profile in
podman4-file)
	# apt and Loki's download and build do not depend on each other: they overlap
	# (the image needs Podman, so it waits).
	(
		install_podman
		install_logrotate
		install_chromium
		install_nginx
	) &
	podman_pid=$!
	write_containers_conf
	build_loki
	wait "$podman_pid"
	export PODTAIL_CHROMIUM=/usr/bin/chromium
	;;
podman5-journald)
	# Same overlap: apt and the Podman build (cgo, needs the -dev packages
	# first) run beside Loki's download and build. Both are cached; warm, this
	# is a few hash sums.
	(
		install_podman5_deps
		install_logrotate
		build_podman5
	) &
	podman_pid=$!
	write_podman5_conf
	build_loki
	wait "$podman_pid"
	build_podman5 # cached now: only puts it first in PATH
	;;
esac
# A journald in both profiles: the journald profile's default, and in the
# podman4-file profile what a container run with --log-driver journald (and
# make bench's journald scenario) writes to. Podman 4.3.1 still defaults to
# k8s-file and file events there: PID 1 is not systemd, and its
# containers.conf names neither.
start_journald
make_image
export PODTAIL_E2E=1 PODTAIL_PROFILE="$profile"
PODTAIL_PODMAN_VERSION=$(podman --version | awk '{print $3}')
export PODTAIL_PODMAN_VERSION
log "ready: profile $profile, podman $PODTAIL_PODMAN_VERSION ($(command -v podman)), loki $PODTAIL_LOKI_BIN, image $PODTAIL_TEST_IMAGE"
if [ $# -gt 0 ]; then
	exec "$@"
fi
