// Package jwks is the "jwks" filter: it answers GET and HEAD with the JWK Set
// (RFC 7517 §5) of the gateway's internal-token keys, so that upstream services,
// or their sidecars' jwt filter, can verify the tokens the tokenmint filter mints.
// It publishes the public keys of a PEM key file, through the same shared Signer
// as tokenmint (gateway/edgetoken), so the set always holds the key that signs and
// any key still being rotated out.
//
// It is not for: publishing another issuer's keys, or holding keys itself. The
// next step is for the control plane to hold the key and publish the set.
package jwks

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/gateway/filter"
)

// ContentType is the media type of a JWK Set (RFC 7517 §8.5.1).
const ContentType = "application/jwk-set+json"

// ReasonMethodNotAllowed is reported for a method other than GET and HEAD.
const ReasonMethodNotAllowed = "method_not_allowed"

// publisher is immutable after Factory: every request gets the same bytes.
type publisher struct {
	body         []byte
	etag         string // strong validator, a digest of body
	cacheControl string
	length       string
	notAllowed   *filter.Error
}

var _ filter.Filter = (*publisher)(nil)

func newPublisher(body []byte, maxAgeSeconds int) *publisher {
	sum := sha256.Sum256(body)
	p := &publisher{
		body:       body,
		etag:       `"` + hex.EncodeToString(sum[:16]) + `"`,
		length:     strconv.Itoa(len(body)),
		notAllowed: &filter.Error{Status: http.StatusMethodNotAllowed, Reason: ReasonMethodNotAllowed},
	}
	if maxAgeSeconds == 0 {
		p.cacheControl = "no-cache"
	} else {
		p.cacheControl = "public, max-age=" + strconv.Itoa(maxAgeSeconds)
	}
	return p
}

// Handle answers the request itself; next is never called.
func (p *publisher) Handle(w http.ResponseWriter, r *http.Request, _ filter.Handler) error {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h["Allow"] = []string{"GET, HEAD"} // RFC 9110 §15.5.6: a 405 says what is allowed
		return p.notAllowed
	}
	h["Etag"] = []string{p.etag}
	h["Cache-Control"] = []string{p.cacheControl}
	if matches(r.Header["If-None-Match"], p.etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h["Content-Type"] = []string{ContentType}
	h["Content-Length"] = []string{p.length}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(p.body)
	}
	return nil
}

// matches implements If-None-Match (RFC 9110 §13.1.2): "*", or a list of entity
// tags compared weakly (W/ ignored).
func matches(values []string, etag string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}
