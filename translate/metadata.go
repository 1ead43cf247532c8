package translate

import (
	"net/http"
	"net/textproto"
	"strings"
)

const (
	// MetadataHeaderPrefix carries metadata in either direction
	// ("Grpc-Metadata-X-Request-Id"), grpc-gateway's convention.
	MetadataHeaderPrefix = "Grpc-Metadata-"
	// MetadataTrailerPrefix carries trailer metadata back ("Grpc-Trailer-X-Cost").
	MetadataTrailerPrefix = "Grpc-Trailer-"
)

func canonicalHeader(h string) string { return textproto.CanonicalMIMEHeaderKey(h) }

// reservedMetadata are keys a client may never set: they frame the gRPC call or
// carry its deadline, and a forged one would change how the call is made.
func reservedMetadata(key string) bool {
	switch key {
	case "content-type", "te", "user-agent", "host", "connection", "keep-alive", "upgrade",
		"transfer-encoding", "proxy-connection", "content-length", "trailer":
		return true
	}
	return strings.HasPrefix(key, "grpc-") || strings.HasPrefix(key, ":") || strings.HasPrefix(key, "grpcgateway-")
}

// validMetadataKey reports the characters gRPC allows in a metadata key.
func validMetadataKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// requestMetadata copies the allow-listed request headers (and, when enabled, the
// Grpc-Metadata-* ones) into out as metadata.
func (t *Transcoder) requestMetadata(in, out http.Header) {
	for h, key := range t.reqMD {
		if vs := in[h]; len(vs) > 0 {
			out[canonicalHeader(key)] = vs
		}
	}
	if !t.opts.GRPCMetadataHeaders {
		return
	}
	for h, vs := range in {
		if !strings.HasPrefix(h, MetadataHeaderPrefix) {
			continue
		}
		key := strings.ToLower(h[len(MetadataHeaderPrefix):])
		if !validMetadataKey(key) || reservedMetadata(key) {
			continue
		}
		out[canonicalHeader(key)] = vs
	}
}

// responseMetadata copies the allow-listed metadata of the service's response
// headers into dst as Grpc-Metadata-* headers.
func (t *Transcoder) responseMetadata(src, dst http.Header) {
	if len(t.respMD) == 0 {
		return
	}
	for k, vs := range src {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if key := strings.ToLower(k); t.respMD[key] {
			dst[canonicalHeader(MetadataHeaderPrefix+key)] = vs
		}
	}
}

// trailerMetadata copies the allow-listed trailer metadata into dst as
// Grpc-Trailer-* HTTP trailers.
func (t *Transcoder) trailerMetadata(src, dst http.Header) {
	if len(t.respMD) == 0 {
		return
	}
	for k, vs := range src {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix)
		if !ok {
			continue
		}
		if key := strings.ToLower(name); t.respMD[key] {
			dst[http.TrailerPrefix+canonicalHeader(MetadataTrailerPrefix+key)] = vs
		}
	}
}

// acceptsTrailers reports "TE: trailers" (RFC 9110 §10.1.4: a server should not
// send trailers the client did not say it can take).
func acceptsTrailers(h http.Header) bool {
	for _, v := range h.Values("Te") {
		if strings.Contains(strings.ToLower(v), "trailers") {
			return true
		}
	}
	return false
}
