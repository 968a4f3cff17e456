package bench

import (
	"fmt"
	"syscall"
)

// fdMargin is the file descriptors a process needs besides its connections: the
// database, listeners, logs.
const fdMargin = 256

// raiseFileLimit makes sure this process may open a file descriptor for each of conns
// client connections, and when the server runs in this process for the server's end of
// each as well. Go raises the soft limit to the hard one at start; beyond that this
// raises the hard limit too, which needs privilege (root, or CAP_SYS_RESOURCE). A server
// started as a child process inherits the raised limit.
func raiseFileLimit(inProcess bool, conns int) error {
	need := uint64(conns + fdMargin)
	if inProcess {
		need += uint64(conns)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // nothing to learn here; opening the connections will tell
	}
	if lim.Cur >= need {
		return nil
	}
	want := lim
	want.Cur = need
	if want.Max < need {
		want.Max = need
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		hint := ""
		if inProcess {
			hint = ", or start the server in its own process"
		}
		return fmt.Errorf("%d connections need about %d open files; the limit is %d (hard %d) and cannot be raised here (%v): raise it with ulimit -n%s", conns, need, lim.Cur, lim.Max, err, hint)
	}
	return nil
}
