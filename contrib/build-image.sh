#!/usr/bin/env bash
# Builds the wakeway container image from a statically linked release binary, with no registry:
#   bash contrib/build-image.sh [TAG]      (default wakeway:latest)
# The image holds the binary and the example config (listening on 0.0.0.0 inside the container).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-wakeway:latest}
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" --bin wakeway
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp contrib/Dockerfile "$context/Dockerfile"
strip -o "$context/wakeway" "target/$target/release/wakeway" 2>/dev/null || cp "target/$target/release/wakeway" "$context/wakeway"
# Inside a container the proxy and the admin API listen on every interface of the container's
# own network namespace (publish them on 127.0.0.1 on the host); the state file goes to the volume.
sed -e 's/^listen = "127.0.0.1:8080"/listen = "0.0.0.0:8080"/' \
    -e 's/^\(# \)\{0,1\}state_file = .*/state_file = "\/var\/lib\/wakeway\/wakeway.state.json"/' \
    config/wakeway.toml > "$context/wakeway.toml"
docker build -q -t "$tag" "$context" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
