#!/bin/sh
# Checks the deployment files under contrib/:
#   - the Quadlet units, with Podman's own Quadlet generator in dry-run mode
#     (system and --user), failing on any error it reports;
#   - every podtail configuration under config/ and contrib/ with
#     `podtail config check`.
# The generator is built from the podman v5 Go module in a throw-away module
# (never the project's go.mod) and cached under $PODTAIL_CACHE.
#
#   contrib/check.sh            # from the repository root, or anywhere
#
# Needs Go (and the module, from the module cache or the proxy).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${PODTAIL_CACHE:-$HOME/.cache/podtail}
podman_version=${PODMAN_QUADLET_VERSION:-v5.8.2}
quadlet=$cache/quadlet-$podman_version
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0

mkdir -p "$cache"
if [ ! -x "$quadlet" ]; then
	echo "==> building quadlet $podman_version into $quadlet"
	mkdir "$tmp/qb"
	(
		cd "$tmp/qb"
		go mod init qb >/dev/null 2>&1
		go get "github.com/containers/podman/v5/cmd/quadlet@$podman_version"
		go build -tags containers_image_openpgp -o "$quadlet.tmp" github.com/containers/podman/v5/cmd/quadlet
	)
	mv "$quadlet.tmp" "$quadlet"
fi

fail=0

# quadlet -dryrun prints the generated units on stdout and its log on stderr;
# it exits non-zero, or logs "converting ...: <error>", on a bad unit.
dryrun() {
	label=$1
	shift
	echo "==> quadlet $* ($label)"
	if ! (cd "$tmp" && QUADLET_UNIT_DIRS="$root/contrib/quadlet" "$quadlet" "$@") >"$tmp/out" 2>"$tmp/err"; then
		cat "$tmp/err" >&2
		echo "FAIL: quadlet $* exited non-zero" >&2
		fail=1
		return
	fi
	if grep -Eiq 'error|unsupported|converting|warning' "$tmp/err"; then
		cat "$tmp/err" >&2
		echo "FAIL: quadlet $* reported problems" >&2
		fail=1
		return
	fi
	for want in $units; do
		if ! grep -q -- "^---$want---\$" "$tmp/out"; then
			echo "FAIL: quadlet $* generated no $want" >&2
			fail=1
		fi
	done
	grep -E '^---|^ExecStart=' "$tmp/out"
}
units="podtail.service podtail-data-volume.service"
dryrun rootful -dryrun
units="podtail-rootless.service podtail-data-volume.service"
dryrun rootless -user -dryrun

echo "==> podtail config check"
bin=$tmp/podtail
(cd "$root" && go build -tags containers_image_openpgp -o "$bin" ./cmd/podtail)
# A podtail configuration is a YAML file with a top-level key only podtail
# has (the Loki, Grafana, Prometheus files here have none of them).
for f in $(find "$root/config" "$root/contrib" -name '*.yaml' -o -name '*.yml' | sort); do
	if grep -Eq '^(podman|discovery|pipeline|files|data_dir|shutdown_timeout):' "$f"; then
		if out=$("$bin" config check --config "$f" 2>&1); then
			echo "$f: $(printf '%s\n' "$out" | grep -m1 'config OK' || echo 'checked')"
		else
			printf '%s\n' "$out" >&2
			echo "FAIL: $f" >&2
			fail=1
		fi
	fi
done

if [ "$fail" -ne 0 ]; then
	echo "contrib/check.sh: FAILED" >&2
	exit 1
fi
echo "contrib/check.sh: OK"
