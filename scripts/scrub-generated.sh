#!/usr/bin/env bash
# Rewrites the one documentation link protoc-gen-go-grpc writes into every
# generated file, so that the repository names no package-registry site; the
# pointer itself (grpc.ClientConn.NewStream) stays. Called by the generating
# scripts after each run.
set -euo pipefail
for f in "$@"; do
  sed -i -E 's#please refer to https://[^ ]*/google\.golang\.org/grpc/\?tab=doc\#ClientConn\.NewStream\.#please refer to the documentation of grpc.ClientConn.NewStream.#' "$f"
done
