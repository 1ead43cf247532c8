package certs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Certificate states in CertificateStatus.State.
const (
	StatePending = "pending" // being obtained (or waiting for a retry of a first attempt)
	StateValid   = "valid"   // a certificate is served
	StateFailed  = "failed"  // the last attempt failed; a certificate may still be served
)

// CertificateStatus is what a Manager knows about one name, for metrics and the
// admin API.
type CertificateStatus struct {
	Name      string
	State     string
	NotAfter  time.Time // of the certificate served now; zero if none
	LastError string    // of the last failed attempt, "" after a success
	Renewals  int       // renewals completed since start
	Failures  int       // failed attempts since start
}

// Stats are a Manager's counters since start.
type Stats struct {
	Obtained uint64 // first certificates stored (by this Manager)
	Renewed  uint64 // renewals stored
	Failed   uint64 // failed attempts, first or renewal
}

// statusBook follows certmagic's events (Config.OnEvent).
type statusBook struct {
	mu    sync.Mutex
	names map[string]*CertificateStatus
	stats Stats
}

func (b *statusBook) entry(name string) *CertificateStatus {
	if b.names == nil {
		b.names = map[string]*CertificateStatus{}
	}
	e := b.names[name]
	if e == nil {
		e = &CertificateStatus{Name: name, State: StatePending}
		b.names[name] = e
	}
	return e
}

func (b *statusBook) pending(names []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range names {
		b.entry(normalizeName(n))
	}
}

// record applies one certmagic event. Names are the ones certmagic reports:
// normalized, as in the config.
func (b *statusBook) record(event string, data map[string]any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		e := b.entry(name)
		e.State, e.LastError = StateValid, ""
		if renewal {
			e.Renewals++
			b.stats.Renewed++
		} else {
			b.stats.Obtained++
		}
	case "cert_failed":
		e := b.entry(name)
		e.State, e.LastError = StateFailed, fmt.Sprint(data["error"])
		e.Failures++
		b.stats.Failed++
	case "cached_managed_cert":
		sans, _ := data["sans"].([]string)
		for _, n := range sans {
			if e := b.entry(n); e.State == StatePending {
				e.State = StateValid
			}
		}
	}
}

// snapshot returns the entries sorted by name, with NotAfter from notAfter.
func (b *statusBook) snapshot(notAfter func(string) time.Time) []CertificateStatus {
	b.mu.Lock()
	out := make([]CertificateStatus, 0, len(b.names))
	for _, e := range b.names {
		out = append(out, *e)
	}
	b.mu.Unlock()
	for i := range out {
		out[i].NotAfter = notAfter(out[i].Name)
	}
	slices.SortFunc(out, func(a, b CertificateStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// events are the certmagic events the book and the log use; the others (one per
// handshake among them) are not built at all.
var events = map[string]bool{"cert_obtaining": true, "cert_obtained": true, "cert_failed": true, "cached_managed_cert": true}

func shouldEmit(event string) bool { return events[event] }

// onEvent is certmagic's Config.OnEvent: it records the event and logs what an
// operator needs to see at the proxy's level.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	m.status.record(event, data)
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		m.log.Info("certificate obtained", "name", name, "renewal", renewal)
	case "cert_failed":
		// certmagic retries in the background, with backoff; a renewal that
		// failed leaves the current certificate in place while it is valid.
		m.log.Error("obtaining a certificate failed; will retry", "name", name, "renewal", renewal, "error", data["error"])
	}
	return nil
}
