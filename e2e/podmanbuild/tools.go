//go:build tools

// Package podmanbuild builds Podman 5.8.2's own `podman` command for the
// test bed's podman5-journald profile (e2e/testbed/testbed.sh).
//
// No Podman 4.9 or 5.x package is reachable for Debian 12, and `go install
// github.com/containers/podman/v5/cmd/podman@v5.8.2` is refused by the
// module proxy (it answers 403 for the module's version list). A module that
// requires the exact version builds cmd/podman from the proxy's zip instead:
//
//	CGO_ENABLED=1 GOFLAGS=-mod=readonly go build \
//	  -tags "seccomp systemd exclude_graphdriver_btrfs containers_image_openpgp" \
//	  -o podman github.com/containers/podman/v5/cmd/podman
//
// This file only pins cmd/podman's dependencies into go.mod and go.sum (the
// tools build tag is never set; a main package cannot be imported
// otherwise). Nothing here is podtail code.
package podmanbuild

import _ "github.com/containers/podman/v5/cmd/podman"
