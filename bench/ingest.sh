#!/usr/bin/env bash
# Server ingest on loopback (issue 2): 4 KiB and 1 MiB versions, 1 and 32 clients,
# next to dd (fdatasync) and SHA-256 speed measured in the same run.
# Usage: bench/ingest.sh [data-parent-dir]   (default: target/, i.e. the same disk)
set -euo pipefail
cd "$(dirname "$0")/.."
export ECTS_BENCH_DIR="${1:-target/bench-ingest}"
cargo build --release --bin ects
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), disk $(df -h "$PWD" | awk 'NR==2{print $1}')"
cargo bench --bench ingest
