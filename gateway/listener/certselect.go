package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// CertificateSource supplies certificates that do not come from files: the
// ACME-managed certificates of a listener whose tls has acme (gateway/certs).
// Implementations must be safe for concurrent use; they are called during
// handshakes.
type CertificateSource interface {
	// GetCertificate returns the certificate for the handshake, or an error when
	// it has none for the client's SNI name. It also answers the CA's TLS-ALPN-01
	// validation handshakes (a ClientHello offering only "acme-tls/1").
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// certSelector chooses the certificate of a handshake on a listener with acme:
//
//  1. a static certificate whose names cover the SNI name: one with the exact
//     name first, then one with a matching wildcard name ("*.example.com");
//  2. the managed certificate for the name (the source may obtain it now, on
//     demand, when its allow-list permits the name);
//  3. the first static certificate (the default), also for clients without SNI;
//  4. otherwise the handshake fails.
//
// Static certificates win for the names they cover so that an operator can pin a
// certificate (an EV certificate, one from another CA) for some names while the
// rest are managed. Among several static certificates for a name, the first one
// the client supports (signature algorithms, curves) is used.
type certSelector struct {
	static staticIndex
	source CertificateSource // nil until the gateway attaches one
}

func (c *certSelector) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeSNI(hello.ServerName)
	if cert := c.static.covering(hello, name); cert != nil {
		return cert, nil
	}
	var managedErr error
	if c.source != nil && name != "" {
		cert, err := c.source.GetCertificate(hello)
		if err == nil && cert != nil && len(cert.Certificate) > 0 {
			return cert, nil
		}
		managedErr = err
	}
	if cert := c.static.fallback(hello); cert != nil {
		return cert, nil
	}
	switch {
	case c.source == nil:
		return nil, fmt.Errorf("no certificate for %q: no static certificate covers it and no certificate manager is attached", name)
	case managedErr != nil:
		return nil, fmt.Errorf("no certificate for %q: %w", name, managedErr)
	}
	return nil, fmt.Errorf("no certificate for %q", name)
}

// challengeCertificate answers a TLS-ALPN-01 validation handshake: only the
// source knows the challenge certificate.
func (c *certSelector) challengeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.source == nil {
		return nil, errors.New("TLS-ALPN-01 handshake: no certificate manager is attached")
	}
	return c.source.GetCertificate(hello)
}

// isACMEChallenge reports whether hello is a TLS-ALPN-01 validation handshake:
// the CA offers acme-tls/1 alone, with the name being validated as SNI (RFC 8737
// §3). An ordinary client never offers that protocol.
func isACMEChallenge(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == alpnACME
}

// normalizeSNI lower-cases name and drops a trailing dot (crypto/tls passes SNI
// as the client sent it, minus a trailing dot on some paths).
func normalizeSNI(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// staticIndex finds static certificates by the DNS names they carry.
type staticIndex struct {
	certs    []tls.Certificate
	exact    map[string][]int // lower-case DNS name -> indices in certs
	wildcard map[string][]int // "example.com" for "*.example.com" -> indices
}

func newStaticIndex(certs []tls.Certificate) staticIndex {
	ix := staticIndex{certs: certs, exact: map[string][]int{}, wildcard: map[string][]int{}}
	for i := range certs {
		leaf := certs[i].Leaf // set by tls.X509KeyPair
		if leaf == nil {
			continue
		}
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName} // legacy certificates without SANs
		}
		for _, n := range names {
			n = strings.ToLower(n)
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				ix.wildcard[rest] = append(ix.wildcard[rest], i)
			} else {
				ix.exact[n] = append(ix.exact[n], i)
			}
		}
	}
	return ix
}

// covering returns the static certificate for name, exact names before
// wildcards, or nil.
func (ix staticIndex) covering(hello *tls.ClientHelloInfo, name string) *tls.Certificate {
	if name == "" {
		return nil
	}
	if cert := ix.pick(hello, ix.exact[name]); cert != nil {
		return cert
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		return ix.pick(hello, ix.wildcard[name[i+1:]])
	}
	return nil
}

// fallback returns the default static certificate: the first the client
// supports, else the first; nil when there is none.
func (ix staticIndex) fallback(hello *tls.ClientHelloInfo) *tls.Certificate {
	if len(ix.certs) == 0 {
		return nil
	}
	for i := range ix.certs {
		if hello.SupportsCertificate(&ix.certs[i]) == nil {
			return &ix.certs[i]
		}
	}
	return &ix.certs[0]
}

// pick returns the first of the indexed certificates the client supports, else
// the first of them; nil for none.
func (ix staticIndex) pick(hello *tls.ClientHelloInfo, idx []int) *tls.Certificate {
	if len(idx) == 0 {
		return nil
	}
	for _, i := range idx {
		if hello.SupportsCertificate(&ix.certs[i]) == nil {
			return &ix.certs[i]
		}
	}
	return &ix.certs[idx[0]]
}
