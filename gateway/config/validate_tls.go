package config

import (
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"strings"
)

// listenerTLS checks spec.tls of a Listener. plainHTTP says whether the set has a
// clear-text HTTP listener, which is where HTTP-01 challenges are answered.
func listenerTLS(f func(field, msg string), t *ListenerTLS, plainHTTP bool) {
	if len(t.Certificates) == 0 && t.ACME == nil {
		f("spec.tls", "at least one of certificates and acme is required")
	}
	for i, c := range t.Certificates {
		if c.CertFile == "" || c.KeyFile == "" {
			f(fmt.Sprintf("spec.tls.certificates[%d]", i), "certFile and keyFile are both required")
		}
	}
	if t.MinVersion != "" && t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		f("spec.tls.minVersion", fmt.Sprintf("%q is not 1.2 or 1.3", t.MinVersion))
	}
	if h := t.HSTS; h != nil {
		switch {
		case h.MaxAge == nil:
			f("spec.tls.hsts.maxAge", `required, such as "31536000s" (one year)`)
		case h.Preload && (!h.IncludeSubDomains || h.MaxAge.D() < HSTSMinPreloadAge):
			f("spec.tls.hsts.preload", "needs includeSubDomains and a maxAge of at least 31536000s (one year)")
		}
	}
	if a := t.ACME; a != nil {
		acme(f, a, plainHTTP)
	}
}

func acme(f func(field, msg string), a *ACME, plainHTTP bool) {
	const p = "spec.tls.acme"
	if a.Directory == "" {
		f(p+".directory", "required: the ACME directory URL of your CA (there is no default CA)")
	} else if u, err := url.Parse(a.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		f(p+".directory", fmt.Sprintf("%q is not an https URL", a.Directory))
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
			f(p+".email", fmt.Sprintf("%q is not an email address", a.Email))
		}
	}
	if len(a.Domains) == 0 && a.OnDemand == nil {
		f(p, "at least one of domains and onDemand is required: nothing would be obtained")
	}
	for i, d := range a.Domains {
		if err := checkACMEName(d); err != nil {
			f(fmt.Sprintf("%s.domains[%d]", p, i), err.Error())
		}
	}
	seen := map[string]bool{}
	for i, c := range a.Challenges {
		q := fmt.Sprintf("%s.challenges[%d]", p, i)
		switch {
		case c != ChallengeHTTP01 && c != ChallengeTLSALPN01:
			f(q, fmt.Sprintf("%q is not HTTP01 or TLSALPN01", c))
		case seen[c]:
			f(q, fmt.Sprintf("%s is listed twice", c))
		}
		seen[c] = true
	}
	if len(a.Challenges) > 0 && !seen[ChallengeTLSALPN01] && seen[ChallengeHTTP01] && !plainHTTP {
		f(p+".challenges", "HTTP01 is answered on a plain-HTTP Listener and this config has none; add one, or allow TLSALPN01")
	}
	if od := a.OnDemand; od != nil {
		if len(od.Allow) == 0 {
			f(p+".onDemand.allow", "at least one name or pattern is required (on-demand issuance is only for names it allows)")
		}
		for i, pat := range od.Allow {
			if err := checkAllowPattern(pat); err != nil {
				f(fmt.Sprintf("%s.onDemand.allow[%d]", p, i), err.Error())
			}
		}
	}
	if s := a.Storage; s != nil {
		switch {
		case s.Path != "" && s.ControlPlane:
			f(p+".storage", "path and controlPlane exclude each other: keep the state in a directory or in the control plane")
		case s.Path == "" && !s.ControlPlane:
			f(p+".storage", "one of path and controlPlane: true is required (omit storage to use the -data directory)")
		}
	}
	if a.RenewBefore != nil && a.RenewBefore.D() <= 0 {
		f(p+".renewBefore", "must be positive")
	}
}

// checkACMEName accepts a fully qualified DNS name a CA can issue for with the
// HTTP-01 and TLS-ALPN-01 challenges: no wildcard, no IP address.
func checkACMEName(name string) error {
	if strings.Contains(name, "*") {
		return fmt.Errorf("%q: a wildcard certificate needs the DNS-01 challenge, which is not supported; list the names, or allow the pattern in onDemand", name)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Errorf("%q: IP addresses are not supported, only DNS names", name)
	}
	return checkDNSName(name)
}

// checkAllowPattern accepts "shop.example.com" and "*.example.com": a wildcard is
// the whole leading label and stands for exactly one label, and it needs at least
// two labels after it (a pattern for a whole top-level domain is refused).
func checkAllowPattern(pat string) error {
	name, wild := strings.CutPrefix(pat, "*.")
	if strings.Contains(name, "*") || name == "" {
		return fmt.Errorf("%q: a wildcard must be the whole leading label and stand for one label, as in *.example.com", pat)
	}
	if wild && !strings.Contains(name, ".") {
		return fmt.Errorf("%q: a wildcard over a top-level domain is too broad", pat)
	}
	return checkDNSName(name)
}

// checkDNSName accepts a host name of at least two labels, each of letters,
// digits and inner hyphens (RFC 1123 §2.1), 253 characters at most. Names with
// other characters (IDNs) are written in their ASCII (punycode) form.
func checkDNSName(name string) error {
	labels := strings.Split(name, ".")
	if len(name) > 253 || len(labels) < 2 {
		return fmt.Errorf("%q is not a fully qualified DNS name", name)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not a DNS name", name)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a DNS name (write internationalised names in their ASCII form)", name)
			}
		}
	}
	return nil
}
