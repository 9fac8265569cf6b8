// Command alloy starts a real Grafana Alloy for podtail's benchmark (bench/).
//
// Alloy's module root has no main package (its `make alloy` builds a nested
// collector module the Go module proxy does not serve), but the public
// flowcmd package registers every component and exposes Alloy's own command
// line: this wrapper runs it, as Alloy's main does. So this small module
// requires github.com/grafana/alloy, repeats its go.mod's replace lines (all
// but the local one for its syntax submodule, whose published version
// compiles) and its k8s.io/client-go excludes. Nothing here is podtail code;
// it exists so the benchmark measures a genuine Alloy (Apache-2.0), built
// only as a test peer.
package main

import (
	"os"

	"github.com/grafana/alloy/flowcmd"
)

func main() {
	if err := flowcmd.RootCommand().Execute(); err != nil {
		os.Exit(1)
	}
}
