#!/bin/sh
# Checks the deployment files under contrib/:
#   - the Quadlet units, with Podman's own Quadlet generator in dry-run mode
#     (system and --user), failing on any error it reports;
#   - the units Quadlet generates and contrib/systemd/podtail.service, with
#     `systemd-analyze verify` (any warning fails);
#   - every podtail configuration under config/ and contrib/ with
#     `podtail config check`;
#   - Grafana, Prometheus and Loki files with e2e/lokibuild/lint, which uses
#     Prometheus's and Loki's own parsers and loaders and checks every metric
#     a dashboard or rule uses against podtail's code; first on a copy broken
#     on purpose, to show the lint still catches each kind of mistake.
#   - the distributed Loki's config (contrib/loki/distributed) with the same
#     lint and, through the test bed, Loki's -verify-config per target; its
#     nginx gateway with `nginx -t` (first on a copy broken on purpose).
# The generator is built from the podman v5 Go module in a throw-away module
# (never the project's go.mod), the lint in the Loki build module (which
# already depends on Loki and Prometheus); both are cached under
# $PODTAIL_CACHE, the lint by the hash of its sources.
#
#   contrib/check.sh            # from the repository root, or anywhere
#
# Needs Go (and the modules, from the module cache or the proxy), and Podman installed: systemd-analyze
# verify refuses a unit whose ExecStart (/usr/bin/podman) is missing. make contrib runs it through the
# test bed, which installs Podman.
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

# Every line systemd-analyze verify prints is a problem (it exits 0 on
# unknown keys and bad values, only saying so). The units run as the system
# manager, or with --user as a user manager, which needs a runtime directory.
have_systemd_analyze() {
	command -v systemd-analyze >/dev/null 2>&1 && return 0
	# Debian's systemd package installs without a running systemd (no
	# service is started); install it only if that removes nothing.
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 &&
		apt-get -s install --no-install-recommends systemd 2>/dev/null | grep -Eq '^[0-9]+ upgraded, [0-9]+ newly installed, 0 to remove'; then
		echo "==> installing systemd (for systemd-analyze; nothing is started)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null && return 0
	fi
	return 1
}
if have_systemd_analyze; then
	analyze=1
else
	analyze=0
	echo "SKIP: systemd-analyze is not installed and systemd cannot be installed cleanly here: units not verified" >&2
fi
verify_units() {
	mode=$1
	shift
	[ "$analyze" -eq 1 ] || return 0
	if [ "$mode" = user ]; then
		out=$(XDG_RUNTIME_DIR="$tmp/xdg" systemd-analyze --user verify "$@" 2>&1) || true
	else
		out=$(systemd-analyze verify "$@" 2>&1) || true
	fi
	if [ -n "$out" ]; then
		printf '%s\n' "$out" >&2
		echo "FAIL: systemd-analyze verify $*" >&2
		fail=1
	else
		echo "systemd-analyze verify${mode:+ --$mode}: $(for u in "$@"; do basename "$u"; done | tr '\n' ' ')OK"
	fi
}
mkdir -m 0700 "$tmp/xdg"

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
	# The generated units, one file each, for systemd-analyze.
	rm -rf "$tmp/units" && mkdir "$tmp/units"
	awk -v dir="$tmp/units" '/^---.*---$/ { f = dir "/" substr($0, 4, length($0) - 6); next } f { print > f }' "$tmp/out"
	set --
	for want in $units; do
		[ -f "$tmp/units/$want" ] && set -- "$@" "$tmp/units/$want"
	done
	verify_units "$mode" "$@"
}
units="podtail.service podtail-data-volume.service"
mode=""
dryrun rootful -dryrun
units="podtail-rootless.service podtail-data-volume.service"
mode=user
dryrun rootless -user -dryrun

bin=$tmp/podtail
(cd "$root" && go build -o "$bin" ./cmd/podtail)

# The plain-binary unit, its ExecStart pointed at the binary just built;
# first a copy with a misspelt key, which must be reported.
if [ "$analyze" -eq 1 ]; then
	echo "==> systemd-analyze verify contrib/systemd/podtail.service"
	mkdir "$tmp/systemd" "$tmp/systemd-bad"
	sed "s#/usr/local/bin/podtail#$bin#" "$root/contrib/systemd/podtail.service" >"$tmp/systemd/podtail.service"
	sed 's/^NoNewPrivileges=/NoNewPrivilege=/' "$tmp/systemd/podtail.service" >"$tmp/systemd-bad/podtail.service"
	if ! systemd-analyze verify "$tmp/systemd-bad/podtail.service" 2>&1 | grep -q "Unknown key 'NoNewPrivilege'"; then
		echo "FAIL: systemd-analyze verify did not report a misspelt key" >&2
		fail=1
	fi
	verify_units "" "$tmp/systemd/podtail.service"
fi

echo "==> podtail config check"
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

echo "==> lint: Grafana dashboards and datasources, Prometheus rules, Loki rules and config"
lintsrc=$root/e2e/lokibuild
sum=$(cat "$lintsrc/go.mod" "$lintsrc/go.sum" "$lintsrc"/lint/*.go | sha256sum | cut -c1-16)
lint=$cache/podtail-lint-$sum
if [ ! -x "$lint" ]; then
	echo "==> building the lint into $lint (shares Loki's packages: minutes cold, seconds once Loki was built)"
	# The flags of testbed.sh's Loki build, so that both use the same build cache.
	(cd "$lintsrc" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -o "$lint.tmp" ./lint)
	mv "$lint.tmp" "$lint"
	# Earlier builds (150 MB each) are of sources that no longer exist.
	find "$cache" -maxdepth 1 -name 'podtail-lint-*' ! -name "podtail-lint-$sum" -exec rm -f {} +
fi
# First, mistakes of each kind in a copy: the lint must name every one.
mkdir "$tmp/broken"
cp -r "$root/pkg" "$root/cmd" "$root/docs" "$root/contrib" "$root/README.md" "$tmp/broken/"
b=$tmp/broken/contrib
# mutate FILE SED: make one mistake; a sed that no longer matches is a
# failure of this script, not a pass.
mutate() {
	cp "$1" "$tmp/before"
	sed -i "$2" "$1"
	if cmp -s "$1" "$tmp/before"; then
		echo "FAIL: check.sh: the mistake '$2' no longer applies to ${1#"$tmp/broken/"}: update it" >&2
		fail=1
	fi
}
mutate "$b/grafana/dashboards/podtail.json" '0,/podtail_loki_entries_sent_total{/s//podtail_loki_entries_snt_total{/'
mutate "$b/grafana/dashboards/podtail.json" 's/podtail_file_lines_read_total{instance=~\\"$instance\\",tenant=/podtail_file_lines_read_total{instance=~\\"$instance\\",tenants=/'
mutate "$b/grafana/dashboards/podtail.json" '0,/histogram_quantile(0.99, /s//histogram_quantile(0.99,, /'
mutate "$b/grafana/dashboards/podtail.json" '0,/"uid": "${datasource}"/s//"uid": "prometheus-typo"/'
mutate "$b/grafana/dashboards/app-logs.json" '0,/{log_level=\\"error\\", /s//{log_level=\\"error\\" /'
mutate "$b/loki/rules/app-errors.yaml" '0,/\[5m\]/s///'
mutate "$b/prometheus/podtail-rules.yaml" '0,/{{ $labels.instance }}/s//{{ $labels.instance }/'
mutate "$b/loki/loki.yaml" 's/^  retention_period:/  retention_perod:/'
mutate "$b/loki/overrides.yaml" 's/^    retention_period:/    retention_perod:/'
printf '\n```logql\n{tenant="beiluo"} |= timeout\n```\n' >>"$tmp/broken/README.md"
"$lint" -root "$tmp/broken" >"$tmp/broken.out" 2>&1 || true
for want in 'podtail_loki_entries_snt_total is not defined' 'has no label "tenants"' 'PromQL does not parse' \
	'datasource "prometheus-typo" is not provisioned' 'app-logs.json: .*LogQL does not parse' \
	'app-errors.yaml: could not parse expression' 'podtail-rules.yaml: .*template' \
	'README.md:[0-9]*: LogQL does not parse' 'loki.yaml: Loki cannot load it' 'overrides.yaml: Loki cannot load it' 'field retention_perod not found'; do
	if ! grep -q -- "$want" "$tmp/broken.out"; then
		cat "$tmp/broken.out" >&2
		echo "FAIL: the lint did not report a mistake made on purpose: $want" >&2
		fail=1
	fi
done
echo "lint: reports each of the mistakes made on purpose in a copy ($(grep -c ': ' "$tmp/broken.out") lines)"
if ! "$lint" -root "$root"; then
	echo "FAIL: lint" >&2
	fail=1
fi

# The distributed Loki (contrib/loki/distributed): its config through the same
# lint, in a copy of the tree where it stands in for loki.yaml; each target
# with Loki's own -verify-config when the test bed's Loki is at hand.
echo "==> lint: contrib/loki/distributed/loki-distributed.yaml"
mkdir "$tmp/dist"
cp -r "$root/pkg" "$root/cmd" "$root/docs" "$root/contrib" "$root/README.md" "$tmp/dist/"
cp "$root/contrib/loki/distributed/loki-distributed.yaml" "$tmp/dist/contrib/loki/loki.yaml"
if ! "$lint" -root "$tmp/dist" >"$tmp/dist.out" 2>&1; then
	sed "s#contrib/loki/loki.yaml#contrib/loki/distributed/loki-distributed.yaml#" "$tmp/dist.out" >&2
	echo "FAIL: lint of loki-distributed.yaml" >&2
	fail=1
else
	echo "loki-distributed.yaml: loads and validates"
fi
if [ -n "${PODTAIL_LOKI_BIN:-}" ]; then
	for target in write read backend; do
		if out=$("$PODTAIL_LOKI_BIN" -config.file="$root/contrib/loki/distributed/loki-distributed.yaml" -target=$target -verify-config 2>&1); then
			echo "loki -target=$target -verify-config: OK"
		else
			printf '%s\n' "$out" >&2
			echo "FAIL: loki -target=$target -verify-config" >&2
			fail=1
		fi
	done
fi

# The gateway with nginx -t, included in the http block of a minimal main
# configuration as /etc/nginx/conf.d would include it; first a copy naming
# an upstream that does not exist, which must be reported.
nginx=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
if [ -x "$nginx" ]; then
	echo "==> nginx -t contrib/loki/distributed/gateway.conf"
	mkdir "$tmp/nginx"
	nginx_t() {
		printf 'pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\nhttp {\n  include %s;\n}\n' "$tmp/nginx" "$tmp/nginx" "$1" >"$tmp/nginx/nginx.conf"
		"$nginx" -t -q -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" 2>&1
	}
	sed 's#http://loki_write;#http://loki_wirte;#' "$root/contrib/loki/distributed/gateway.conf" >"$tmp/nginx/broken.conf"
	if ! nginx_t "$tmp/nginx/broken.conf" | grep -q 'host not found in upstream "loki_wirte"'; then
		echo "FAIL: nginx -t did not report an unknown upstream" >&2
		fail=1
	fi
	if out=$(nginx_t "$root/contrib/loki/distributed/gateway.conf"); then
		echo "gateway.conf: nginx -t OK"
	else
		printf '%s\n' "$out" >&2
		echo "FAIL: nginx -t contrib/loki/distributed/gateway.conf" >&2
		fail=1
	fi
else
	echo "SKIP: nginx is not installed (e2e/testbed/testbed.sh installs it): gateway.conf not checked" >&2
fi

if [ "$fail" -ne 0 ]; then
	echo "contrib/check.sh: FAILED" >&2
	exit 1
fi
echo "contrib/check.sh: OK"
