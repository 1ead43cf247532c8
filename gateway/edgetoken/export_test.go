package edgetoken

import "crypto"

// KeyIDOf is the kid (RFC 7638 thumbprint) the package gives a public key.
func KeyIDOf(pub crypto.PublicKey) (string, error) {
	j, err := publicJWKOf(pub)
	return j.Kid, err
}
