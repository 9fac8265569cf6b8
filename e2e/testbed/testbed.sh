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
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PODTAIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podtail}
mkdir -p "$cache"

log() { printf 'testbed: %s\n' "$*" >&2; }

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

# apt and Loki's download and build do not depend on each other: they overlap
# (the image needs Podman, so it waits).
install_podman &
podman_pid=$!
write_containers_conf
build_loki
wait "$podman_pid"
make_image
export PODTAIL_E2E=1
log "ready: podman $(podman --version | awk '{print $3}'), loki $PODTAIL_LOKI_BIN, image $PODTAIL_TEST_IMAGE"
if [ $# -gt 0 ]; then
	exec "$@"
fi
