package edgetoken_test

import (
	"testing"

	"github.com/portcullis/portcullis/gateway/edgetoken"
)

// benchMint measures one Mint: payload encoding, a fresh jti and one signature.
func benchMint(b *testing.B, pem []byte) {
	s, err := edgetoken.NewSigner(pem)
	if err != nil {
		b.Fatal(err)
	}
	c := claims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Mint(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMintES256(b *testing.B) { benchMint(b, sec1(keys().ec1)) }
func BenchmarkMintRS256(b *testing.B) { benchMint(b, pkcs1(keys().rsa)) }
