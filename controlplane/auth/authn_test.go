package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	cpv1 "github.com/portcullis/portcullis/controlplane/api/v1alpha1"
	"github.com/portcullis/portcullis/controlplane/auth"
)

func newAuthenticator(t *testing.T, oidc *auth.OIDCVerifier) (*auth.Authenticator, map[string]string) {
	t.Helper()
	tokens := map[string]string{}
	for _, n := range []string{"proxy", "ci"} {
		tok, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		tokens[n] = tok
	}
	a, err := auth.NewAuthenticator(auth.Options{
		ProxyTokens: []auth.ProxyToken{{Name: "shop-ingress", SHA256: auth.TokenDigest(tokens["proxy"]), Role: "ingress", Namespace: "shop", ProxyName: "*"}},
		APITokens:   []auth.APIToken{{Name: "ci", SHA256: auth.TokenDigest(tokens["ci"])}},
		OIDC:        oidc,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a, tokens
}

func chain(leaf *x509.Certificate) [][]*x509.Certificate { return [][]*x509.Certificate{{leaf}} }

func TestAuthenticate(t *testing.T) {
	a, tokens := newAuthenticator(t, nil)
	spiffe, _ := url.Parse("spiffe://example.com/deployer")
	withURI := &x509.Certificate{Subject: pkix.Name{CommonName: "ignored"}, URIs: []*url.URL{spiffe}}
	withCN := &x509.Certificate{Subject: pkix.Name{CommonName: "deploy-bot"}}
	anonymous := &x509.Certificate{}
	cases := []struct {
		name  string
		creds auth.Credentials
		want  auth.Principal
		err   string
	}{
		{"proxy token", auth.Credentials{Authorization: "Bearer " + tokens["proxy"]},
			auth.Principal{Kind: auth.KindProxy, Name: "shop-ingress", ProxyRole: "ingress", ProxyNamespace: "shop", ProxyName: "*"}, ""},
		{"api token, scheme in any case", auth.Credentials{Authorization: "bearer " + tokens["ci"]}, auth.Principal{Kind: auth.KindToken, Name: "ci"}, ""},
		{"certificate by URI SAN", auth.Credentials{VerifiedChains: chain(withURI)}, auth.Principal{Kind: auth.KindCert, Name: "spiffe://example.com/deployer"}, ""},
		{"certificate by CN", auth.Credentials{VerifiedChains: chain(withCN)}, auth.Principal{Kind: auth.KindCert, Name: "deploy-bot"}, ""},
		{"certificate without a name", auth.Credentials{VerifiedChains: chain(anonymous)}, auth.Principal{}, "neither a URI SAN nor a subject common name"},
		{"an invalid token wins over a valid certificate", auth.Credentials{Authorization: "Bearer nope", VerifiedChains: chain(withCN)}, auth.Principal{}, "not one this control plane knows"},
		{"a JWT without OIDC configured", auth.Credentials{Authorization: "Bearer a.b.c"}, auth.Principal{}, "not one this control plane knows"},
		{"basic auth", auth.Credentials{Authorization: "Basic dXNlcjpwYXNz"}, auth.Principal{}, `not "Bearer <token>"`},
		{"empty bearer", auth.Credentials{Authorization: "Bearer  "}, auth.Principal{}, `not "Bearer <token>"`},
		{"nothing", auth.Credentials{}, auth.Principal{}, "no credentials"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(context.Background(), tc.creds)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				for _, tok := range tokens {
					if strings.Contains(err.Error(), tok) {
						t.Fatal("the error holds a token")
					}
				}
				return
			}
			if err != nil || p != tc.want {
				t.Fatalf("got %+v, %v; want %+v", p, err, tc.want)
			}
		})
	}
}

func TestRefusalEntry(t *testing.T) {
	e := auth.Refusal{
		Method: "/portcullis.controlplane.v1alpha1.Resources/Delete", Peer: "127.0.0.1:5555", Reason: "no credentials",
		Request: &cpv1.DeleteRequest{Kind: "Route", Namespace: "shop", Name: "web"},
	}.Entry()
	if e.Action != "delete" || e.Kind != "Route" || e.Namespace != "shop" || e.Name != "web" || e.Allowed || e.Principal != "" ||
		!strings.Contains(e.Reason, "Resources/Delete unauthenticated (peer 127.0.0.1:5555): no credentials") {
		t.Fatalf("entry: %v", e)
	}
	if h := (auth.Refusal{Method: "HTTP GET /v1/status", Reason: "x"}).Entry(); h.Action != "http" || !strings.Contains(h.Reason, "HTTP GET /v1/status") {
		t.Fatalf("HTTP entry: %v", h)
	}
}

// mintIDToken signs an ID token for user with the provider's key at now.
func mintIDToken(t *testing.T, idp *mockoidc.MockOIDC, user mockoidc.User, now time.Time, key *rsa.PrivateKey) string {
	t.Helper()
	sess, err := idp.SessionStore.NewSession("openid email profile", "n", user, "", "")
	if err != nil {
		t.Fatal(err)
	}
	kp := idp.Keypair
	if key != nil {
		if kp, err = mockoidc.NewKeypair(key); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := sess.IDToken(idp.Config(), kp, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestOIDCBearerTokens(t *testing.T) {
	idp, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Shutdown() })
	verifier := func(claim string) *auth.Authenticator {
		v, err := auth.NewOIDCVerifier(auth.OIDCConfig{Issuer: idp.Issuer(), Audience: idp.ClientID, Claim: claim})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := newAuthenticator(t, v)
		return a
	}
	ctx := context.Background()
	now := time.Now()
	verified := &mockoidc.MockUser{Subject: "u-1", Email: "jane@example.com", EmailVerified: true, PreferredUsername: "jane"}
	unverified := unverifiedUser{subject: "u-2", email: "mallory@example.com"}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, claim, token, want, err string
	}{
		{"email by default", "", mintIDToken(t, idp, verified, now, nil), "jane@example.com", ""},
		{"an unverified email is not a name", "", mintIDToken(t, idp, unverified, now, nil), "u-2", ""},
		{"configured claim", "preferred_username", mintIDToken(t, idp, verified, now, nil), "jane", ""},
		{"configured claim missing", "groups_x", mintIDToken(t, idp, verified, now, nil), "", `no string claim "groups_x"`},
		{"expired", "", mintIDToken(t, idp, verified, now.Add(-time.Hour), nil), "", "expired"},
		{"signed by another key", "", mintIDToken(t, idp, verified, now, otherKey), "", "not valid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := verifier(tc.claim).Authenticate(ctx, auth.Credentials{Authorization: "Bearer " + tc.token})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), tc.token) {
					t.Fatalf("err = %v, want one containing %q (and not the token)", err, tc.err)
				}
				return
			}
			if err != nil || p != (auth.Principal{Kind: auth.KindUser, Name: tc.want}) {
				t.Fatalf("got %+v, %v; want user:%s", p, err, tc.want)
			}
		})
	}
}

func TestOIDCProviderDownIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	v, err := auth.NewOIDCVerifier(auth.OIDCConfig{Issuer: "http://" + addr + "/oidc", Audience: "x"})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := newAuthenticator(t, v)
	for range 2 { // the second attempt is answered from the remembered failure
		_, err = a.Authenticate(context.Background(), auth.Credentials{Authorization: "Bearer a.b.c"})
		if !auth.IsUnavailable(err) {
			t.Fatalf("err = %v, want an outage", err)
		}
	}
}

// unverifiedUser is a person whose provider says outright (email_verified: false)
// that it has not checked the address.
type unverifiedUser struct{ subject, email string }

func (u unverifiedUser) ID() string                        { return u.subject }
func (u unverifiedUser) Userinfo([]string) ([]byte, error) { return []byte(`{}`), nil }
func (u unverifiedUser) Claims(_ []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	rc := base.RegisteredClaims
	return jwt.MapClaims{
		"iss": rc.Issuer, "sub": u.subject, "aud": []string(rc.Audience), "jti": rc.ID,
		"exp": rc.ExpiresAt.Unix(), "iat": rc.IssuedAt.Unix(), "nbf": rc.NotBefore.Unix(),
		"email": u.email, "email_verified": false,
	}, nil
}
