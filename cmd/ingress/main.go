// Command ingress runs Portcullis as the public API edge. Without -config it starts
// an embedded demo (a demo backend and a TLS listener with a locally generated
// certificate) and prints what to curl.
package main

import (
	"github.com/portcullis/portcullis/gateway"
	_ "github.com/portcullis/portcullis/gateway/filters/all"
	"github.com/portcullis/portcullis/internal/demo"
)

func main() { gateway.Main(gateway.RoleIngress, demo.Files) }
