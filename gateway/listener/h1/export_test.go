package h1

// WatchStarts reports how many disconnect watchers have started reading.
func WatchStarts() int64 { return watchStarts.Load() }

// HoldsWatchedByte reports whether the disconnect watcher of w's connection
// has read a byte that the server has not consumed yet.
func HoldsWatchedByte(w any) bool {
	c := w.(*response).c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.held
}
