#!/usr/bin/env bash
# `ects backup` versus `restic backup` on the same real tree of thousands of small files:
# first run, unchanged re-run, and (ects only) an unchanged re-run with a cold hash cache.
#
#   bench/backup_vs_restic.sh [TREE]     TREE defaults to /usr/include (~8000 headers)
#
# Needs restic (Debian: apt-get install restic). Builds ects in release mode unless
# ECTS_BIN points at a binary. ects runs against a real `ects server` on loopback;
# restic writes to a local repository. Both read a private copy of TREE from a warm
# page cache. Prints one table; nothing is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

TREE="${1:-/usr/include}"
command -v restic >/dev/null || { echo "restic is not installed (apt-get install restic)" >&2; exit 2; }
if [ -z "${ECTS_BIN:-}" ]; then
  cargo build --release --quiet
  ECTS_BIN="$PWD/target/release/ects"
fi

WORK="$(mktemp -d /tmp/ects-bench-XXXXXX)"
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A private copy of the tree, stored under its own folder name.
NAME="$(basename "$TREE")"
mkdir -p "$WORK/src"
cp -a "$TREE" "$WORK/src/$NAME"
SRC="$WORK/src/$NAME"
FILES=$(find "$SRC" -type f | wc -l)
BYTES=$(du -sb "$SRC" | cut -f1)

# The server, on a free loopback port.
for v in $(env | grep -o '^ECTS_[A-Z_]*'); do unset "$v"; done
printf 'bench-password\n' > "$WORK/pw"
"$ECTS_BIN" user add bench --data "$WORK/data" --password-file "$WORK/pw" >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$ECTS_BIN" server --data "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$PORT/api/v1/health" >/dev/null 2>&1 && break
  sleep 0.05
done

seconds() { # runs "$@" quietly, prints wall seconds
  local start end
  start=$(date +%s.%N)
  "$@" >"$WORK/last.out" 2>&1 || { cat "$WORK/last.out" >&2; echo "FAILED: $*" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}

ects_backup() {
  RUST_LOG=warn "$ECTS_BIN" backup "$SRC" --server "http://127.0.0.1:$PORT" --user bench \
    --password-file "$WORK/pw" --cache "$1"
}

export RESTIC_PASSWORD=bench-password RESTIC_REPOSITORY="$WORK/restic" RESTIC_CACHE_DIR="$WORK/restic-cache"
restic init --quiet >/dev/null

E1=$(seconds ects_backup "$WORK/cache")
E2=$(seconds ects_backup "$WORK/cache")
E3=$(seconds ects_backup "$WORK/cache-cold")
R1=$(seconds restic backup --quiet "$SRC")
R2=$(seconds restic backup --quiet "$SRC")

echo "tree: $TREE ($FILES files, $((BYTES / 1024 / 1024)) MiB); $(nproc) cores; $(restic version | cut -d' ' -f1-2)"
printf '%-44s %8s %8s\n' "run" "ects" "restic"
printf '%-44s %7ss %7ss\n' "first backup" "$E1" "$R1"
printf '%-44s %7ss %7ss\n' "unchanged re-run" "$E2" "$R2"
printf '%-44s %7ss %8s\n' "unchanged re-run, cold hash cache (ects)" "$E3" "-"
