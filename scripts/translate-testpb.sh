#!/usr/bin/env bash
# Regenerates the transcoder's test service (translate/internal/testpb) from
# library.proto, and its descriptor set, then the grpc-gateway golden files.
# The outputs are committed; run this only after editing library.proto or the
# compatibility cases. The generators are pinned and installed into a private GOBIN;
# the .proto is compiled in-process (translate/internal/gen), so no protoc and no
# proto registry is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(go env GOPATH)/portcullis-protogen/bin"
mkdir -p "$bin"
export GOBIN="$bin"
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.31.0
go run ./translate/internal/gen -bin "$bin" -dir translate/internal/testpb -proto library.proto
scripts/scrub-generated.sh translate/internal/testpb/*_grpc.pb.go
PORTCULLIS_UPDATE_GOLDEN=1 go test -run TestWriteGolden ./translate/
