//go:build !unix || solaris

package listener

import "syscall"

// reusePort does nothing where SO_REUSEPORT is missing: a rebind on the same
// address then fails until the old listener is closed.
func reusePort(network, address string, c syscall.RawConn) error { return nil }
