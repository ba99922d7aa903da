#!/usr/bin/env bash
# Builds and runs a Go example in GOPATH mode (docs/EXAMPLES.md):
#   examples/go/run.sh lock  [-address HOST:PORT]
#   examples/go/run.sh queue [-address HOST:PORT]
# The Go stubs of spindle.v1 are generated into a temporary GOPATH (never committed) with
# protoc-gen-go and protoc-gen-go-grpc; grpc-go and protobuf come from Debian's /usr/share/gocode.
# Set SPINDLE_GO_GOPATH to reuse a GOPATH between runs (the stubs are regenerated each time).
set -euo pipefail

example=${1:?usage: run.sh lock|queue [flags]}
shift
here=$(cd "$(dirname "$0")" && pwd)
protos=${SPINDLE_PROTOS:-$here/../../protos}
if [ ! -d "$here/$example" ]; then
  echo "run.sh: no example '$example' (have: lock, queue)" >&2
  exit 2
fi

gopath=${SPINDLE_GO_GOPATH:-}
if [ -z "$gopath" ]; then
  gopath=$(mktemp -d)
  trap 'rm -rf "$gopath"' EXIT
fi
mkdir -p "$gopath/src" "$gopath/bin"
rm -rf "$gopath/src/spindle"
protoc -I "$protos" --go_out="$gopath/src" --go-grpc_out="$gopath/src" "$protos"/spindle/v1/*.proto

export GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS=-mod=
(cd "$here" && go build -o "$gopath/bin/$example" "./$example")
"$gopath/bin/$example" "$@"
