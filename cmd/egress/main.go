// Command egress runs Portcullis in the egress role. It shares every flag and the whole
// routing core with the other roles; see gateway.Main.
package main

import (
	"github.com/portcullis/portcullis/gateway"
	_ "github.com/portcullis/portcullis/gateway/filters/all"
)

func main() { gateway.Main(gateway.RoleEgress, nil) }
