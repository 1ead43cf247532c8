#!/usr/bin/env bash
# install-k6.sh: installs the pinned k6 into $(go env GOPATH)/bin, built from source
# through the Go module proxy (the only place this project fetches k6 from), unless
# that exact version is already installed there or on PATH.
#
#   loadtest/install-k6.sh        # then: export PATH="$(go env GOPATH)/bin:$PATH"
#
# The build takes several minutes on a 2-core machine: k6 is a large module.
# To move the pin, change K6_VERSION to a v1.x release that builds with this repo's Go
# (go list -m -versions go.k6.io/k6) and re-run loadtest/runner once to check.
set -euo pipefail

K6_VERSION=v1.8.1

bin="$(go env GOPATH | cut -d: -f1)/bin"

has_version() { # path-to-k6
  [[ -x $1 ]] && "$1" version 2>/dev/null | head -n1 | grep -q "^k6 ${K6_VERSION}\b"
}

for k6 in "$bin/k6" "$(command -v k6 || true)"; do
  if [[ -n $k6 ]] && has_version "$k6"; then
    echo "k6 ${K6_VERSION} already installed: $k6"
    exit 0
  fi
done

# Only the module proxy: drop a ",direct" (or "|direct") fallback so a module the
# proxy lacks fails here instead of being fetched from its origin repository.
proxy="$(go env GOPROXY)"
proxy="${proxy//|/,}"
proxy="$(tr ',' '\n' <<<"$proxy" | grep -v -x -e direct -e off -e '' | paste -sd, -)"
if [[ -z $proxy ]]; then
  echo "install-k6.sh: GOPROXY ($(go env GOPROXY)) names no module proxy" >&2
  exit 1
fi

echo "installing k6 ${K6_VERSION} into $bin (via GOPROXY=$proxy; this takes minutes)"
GOBIN="$bin" GOPROXY="$proxy" go install "go.k6.io/k6@${K6_VERSION}"

if ! has_version "$bin/k6"; then
  echo "install-k6.sh: $bin/k6 does not report ${K6_VERSION}:" >&2
  "$bin/k6" version >&2 || true
  exit 1
fi
"$bin/k6" version | head -n1
case ":$PATH:" in
  *":$bin:"*) ;;
  *) echo "note: $bin is not on PATH; the runner finds k6 there anyway" ;;
esac
