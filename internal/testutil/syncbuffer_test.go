package testutil_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/internal/testutil"
)

// TestSyncBufferZeroValue: a zero SyncBuffer is empty and takes writes.
func TestSyncBufferZeroValue(t *testing.T) {
	var b testutil.SyncBuffer
	if got := b.String(); got != "" {
		t.Fatalf("zero value holds %q, want empty", got)
	}
	if got := b.Bytes(); len(got) != 0 {
		t.Fatalf("zero value Bytes = %q, want empty", got)
	}
	n, err := b.Write([]byte("hello"))
	if n != 5 || err != nil {
		t.Fatalf("Write = %d, %v; want 5, nil", n, err)
	}
	if got := b.String(); got != "hello" {
		t.Fatalf("String = %q, want %q", got, "hello")
	}
}

// TestSyncBufferBytesIsACopy: changing the slice Bytes returned does not change
// the buffer, and later writes do not change the slice.
func TestSyncBufferBytesIsACopy(t *testing.T) {
	var b testutil.SyncBuffer
	fmt.Fprint(&b, "abc")
	got := b.Bytes()
	got[0] = 'X'
	if s := b.String(); s != "abc" {
		t.Fatalf("buffer changed through Bytes' result: %q", s)
	}
	fmt.Fprint(&b, "def")
	if string(got) != "Xbc" {
		t.Fatalf("Bytes' result changed by a later write: %q", got)
	}
}

// TestSyncBufferReset: Reset empties the buffer and it takes writes again.
func TestSyncBufferReset(t *testing.T) {
	var b testutil.SyncBuffer
	fmt.Fprint(&b, "before")
	b.Reset()
	if s := b.String(); s != "" {
		t.Fatalf("after Reset the buffer holds %q", s)
	}
	fmt.Fprint(&b, "after")
	if s := b.String(); s != "after" {
		t.Fatalf("String = %q, want %q", s, "after")
	}
}

// TestSyncBufferConcurrent: whole lines written from several goroutines while
// another reads all arrive intact (run with -race to check the locking).
func TestSyncBufferConcurrent(t *testing.T) {
	const writers, lines = 8, 200
	var b testutil.SyncBuffer
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(&b, "w%d-%d\n", w, i)
			}
		}()
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for range 100 {
			_ = b.String()
			_ = b.Bytes()
		}
	}()
	wg.Wait()
	<-readerDone

	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	seen := make(map[string]bool, len(got))
	for _, l := range got {
		seen[l] = true
	}
	for w := range writers {
		for i := range lines {
			if want := fmt.Sprintf("w%d-%d", w, i); !seen[want] {
				t.Fatalf("line %q missing", want)
			}
		}
	}
	if !bytes.Equal(b.Bytes(), []byte(b.String())) {
		t.Fatal("Bytes and String disagree")
	}
}
