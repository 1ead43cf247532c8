//go:build unix && !solaris

package listener

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort sets SO_REUSEPORT on the listening socket before bind, so that a new
// listener can bind an address while the old one still holds it (a rebind on
// reload). Linux only lets sockets of the same user share a port this way.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
