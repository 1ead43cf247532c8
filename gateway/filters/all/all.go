// Package all registers every filter type of this repository. A binary imports it
// for its side effects, so that its configs may name any of them:
//
//	import _ "github.com/portcullis/portcullis/gateway/filters/all"
//
// It is not for: choosing a reduced set of filters; a binary that wants only some
// imports those packages one by one instead. It has no API of its own.
package all

import (
	_ "github.com/portcullis/portcullis/gateway/filters/authz"        // type "authz"
	_ "github.com/portcullis/portcullis/gateway/filters/cors"         // type "cors"
	_ "github.com/portcullis/portcullis/gateway/filters/credexchange" // type "credexchange"
	_ "github.com/portcullis/portcullis/gateway/filters/fault"        // type "fault"
	_ "github.com/portcullis/portcullis/gateway/filters/grpcweb"      // type "grpcweb"
	_ "github.com/portcullis/portcullis/gateway/filters/headers"      // type "headers"
	_ "github.com/portcullis/portcullis/gateway/filters/jwks"         // type "jwks"
	_ "github.com/portcullis/portcullis/gateway/filters/jwt"          // type "jwt"
	_ "github.com/portcullis/portcullis/gateway/filters/mirror"       // type "mirror"
	_ "github.com/portcullis/portcullis/gateway/filters/oidc"         // type "oidc"
	_ "github.com/portcullis/portcullis/gateway/filters/ratelimit"    // type "ratelimit"
	_ "github.com/portcullis/portcullis/gateway/filters/restbridge"   // type "restbridge"
	_ "github.com/portcullis/portcullis/gateway/filters/tokenmint"    // type "tokenmint"
	_ "github.com/portcullis/portcullis/gateway/filters/transcode"    // type "transcode"
)
