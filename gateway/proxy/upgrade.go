package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/gateway/filter"
)

// Protocol upgrades (RFC 9110 §7.8), such as WebSocket (RFC 6455 §4).
//
// A rule lists the protocols it tunnels (forward.upgrades). An HTTP/1.1 GET
// without a body whose Connection has "upgrade" and whose Upgrade names an
// allowed protocol is forwarded with its Connection and Upgrade fields (the
// protocols not allowed removed); if the upstream answers 101, the 101 goes to
// the client and the connection becomes a tunnel (tunnel.go) until either side
// ends it or the idle timeout. Any other answer is relayed as usual. Every
// other upgrade request is forwarded as a plain request, without Upgrade, like
// any hop-by-hop field.
//
// The tunnel runs inside ServeHTTP, so the request holds its place under the
// cluster's circuitBreaker.maxRequests, the endpoint counts it in flight, and
// the upstream connection holds its place under maxConnections, for the
// tunnel's whole life; the listener keeps the client connection in its
// accounting and closes it when a graceful shutdown's grace period ends.
//
// HTTP/2 clients cannot upgrade (RFC 9113 §8.6); WebSocket over HTTP/2
// (extended CONNECT, RFC 8441) is not supported, nor are HTTP/2 upstreams
// (config validation refuses upgrades towards them).

// DefaultUpgradeIdleTimeout is forward.upgradeIdleTimeout's default. Peers that
// are gone are found sooner by TCP keep-alive (on client and upstream
// connections alike), so this bounds tunnels whose peers are alive but silent:
// long enough for applications that send no heartbeats (a dashboard that
// pushes rare updates), short enough that a forgotten tab does not hold an
// upstream connection for days.
const DefaultUpgradeIdleTimeout = time.Hour

var connectionUpgrade = []string{"Upgrade"}

// upgradeOffer returns the Upgrade field to send upstream when r asks to switch
// to a protocol this rule tunnels and its connection can be taken over: the
// client's list (protocol-name ["/" protocol-version], in its order of
// preference) without the protocols the rule does not allow. Otherwise "": the
// request is forwarded as a plain one.
func (f *Forwarder) upgradeOffer(w http.ResponseWriter, r *http.Request) string {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.Method != http.MethodGet ||
		r.ContentLength != 0 || len(r.TransferEncoding) > 0 || !hasToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	var offer []string
	for _, v := range r.Header["Upgrade"] {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			if f.upgradeAllowed(p) {
				offer = append(offer, p)
			}
		}
	}
	if len(offer) == 0 || !canHijack(w) {
		return ""
	}
	return strings.Join(offer, ", ")
}

// upgradeAllowed reports whether the rule tunnels protocol ("name" or
// "name/version"; names are case-insensitive).
func (f *Forwarder) upgradeAllowed(protocol string) bool {
	name, _, _ := strings.Cut(protocol, "/")
	for _, a := range f.upgrades {
		if strings.EqualFold(name, a) {
			return true
		}
	}
	return false
}

// canHijack reports whether w, or a writer it wraps (Unwrap, as
// http.ResponseController follows), can give its connection up: true on
// HTTP/1.x connections, false on HTTP/2.
func canHijack(w http.ResponseWriter) bool {
	for {
		if _, ok := w.(http.Hijacker); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// errBadUpgrade: the upstream switched protocols when it was not asked to, or
// to one that was not offered (RFC 9110 §7.8 forbids both).
var errBadUpgrade = &filter.Error{Status: http.StatusBadGateway, Reason: "upstream_bad_upgrade"}

// switchProtocols answers the client's upgrade with the upstream's 101 and
// runs the tunnel until it ends. offer is what was sent upstream ("" when the
// request was not an upgrade); cookie is the sticky-session cookie, if any. Once the 101 has gone out it returns nil: the
// outcome is in info (bytes each way, and the reason an idle tunnel ended).
func (f *Forwarder) switchProtocols(w http.ResponseWriter, resp *http.Response, info *Info, up *Upstream, offer string, cookie *http.Cookie) (condition, error) {
	upConn, ok := resp.Body.(io.ReadWriteCloser)
	proto := resp.Header.Get("Upgrade")
	if offer == "" || !ok || !offered(offer, proto) {
		resp.Body.Close()
		info.Reason = errBadUpgrade.Reason
		return condReset, errBadUpgrade
	}
	h := w.Header()
	copyResponseHeader(h, resp.Header) // Sec-WebSocket-Accept and the like are end to end
	h["Connection"] = connectionUpgrade
	h["Upgrade"] = []string{proto}
	if cookie != nil {
		h.Add("Set-Cookie", cookie.String()) // sticky sessions (browsers take cookies from a 101)
	}
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upConn.Close()
		info.Reason = "client_gone"
		return condClientGone, errClientGone
	}
	var clientR io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		// net/http's server hands buffered client bytes over here (h1's conn
		// returns them itself, and this is empty).
		b, _ := brw.Reader.Peek(n)
		clientR = io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn)
	}
	up.tunnels.Add(1)
	res := runTunnel(conn, clientR, upConn, f.upgradeIdle)
	up.tunnels.Add(-1)
	info.TunnelBytesIn, info.TunnelBytesOut = res.fromClient, res.toClient
	if res.idleClosed {
		info.Reason = "upgrade_idle_timeout"
	}
	return condOK, nil
}

// offered reports whether proto, from a 101's Upgrade field, is one of the
// protocols in offer.
func offered(offer, proto string) bool {
	name, _, _ := strings.Cut(strings.TrimSpace(proto), "/")
	if name == "" || strings.Contains(proto, ",") {
		return false // a 101 names the one protocol switched to
	}
	for o := range strings.SplitSeq(offer, ",") {
		on, _, _ := strings.Cut(strings.TrimSpace(o), "/")
		if strings.EqualFold(on, name) {
			return true
		}
	}
	return false
}

// OpenTunnels returns the tunnels (upgraded connections) open to the cluster
// now, for metrics.
func (up *Upstream) OpenTunnels() int64 { return up.tunnels.Load() }
