package release

import "runtime"

func runtimeGOROOT() string { return runtime.GOROOT() }
