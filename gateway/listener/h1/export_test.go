package h1

// WatchStarts reports how many disconnect watchers have started reading.
func WatchStarts() int64 { return watchStarts.Load() }
