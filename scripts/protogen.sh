#!/usr/bin/env bash
# Regenerates the Go code of the project's .proto files. The generated files are
# committed, so building and testing never need this; run it after editing a .proto.
# The generators are pinned here, installed with go install into a private GOBIN.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(go env GOPATH)/portcullis-protogen/bin"
mkdir -p "$bin"
export GOBIN="$bin" PATH="$bin:$PATH"
go install github.com/bufbuild/buf/cmd/buf@v1.75.0
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
for dir in controlplane/api; do
  (cd "$dir" && buf generate)
done
scripts/scrub-generated.sh controlplane/api/v1alpha1/*_grpc.pb.go
