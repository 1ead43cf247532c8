// Command sidecar runs Portcullis in the sidecar role. It shares every flag and the whole
// routing core with the other roles; see gateway.Main.
package main

import (
	"github.com/portcullis/portcullis/gateway"
	_ "github.com/portcullis/portcullis/gateway/filters/all"
)

func main() { gateway.Main(gateway.RoleSidecar, nil) }
