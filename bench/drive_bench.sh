#!/usr/bin/env bash
# The drive's benchmark (issue 4): native folder vs the drive vs `rclone mount
# --vfs-cache-mode writes`, all on the same disk.
#
#   untar of a real source tree (thousands of files), find + du over it,
#   fio 4 KiB and 1 MiB sequential writes, and the time from close() to
#   "version stored" (p50/p99 over 1,000 small saves, one at a time).
#
# Usage: bench/drive_bench.sh            (builds target/release/ects first)
#   ECTS_BIN=path/to/ects   use that binary
#   BENCH_DIR=/some/dir     where to work (default: a temp dir under /tmp)
#   FIO_SIZE=256M           bytes per fio run
#   SAVES=1000              close→stored samples
#   NO_PASSTHROUGH=1        run the drive without kernel passthrough (writeback cache)
#   SERVER=1                close→stored also against `ects server` on loopback
# Needs: tar, fio, python3, fusermount3; rclone optional. Run as root for passthrough.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${ECTS_BIN:-}" ]]; then
    (cd "$here" && cargo build --release -j2 -q)
    ECTS_BIN="$here/target/release/ects"
fi
work=${BENCH_DIR:-$(mktemp -d /tmp/ects-bench.XXXXXX)}
FIO_SIZE=${FIO_SIZE:-256M}
SAVES=${SAVES:-1000}
mkdir -p "$work"
pids=()
mounts=()
cleanup() {
    for m in "${mounts[@]:-}"; do [[ -n "$m" ]] && fusermount3 -u -z "$m" 2>/dev/null || true; done
    for p in "${pids[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
is_mounted() { grep -q " $1 " /proc/self/mountinfo; }
wait_mounted() {
    for _ in $(seq 1 600); do is_mounted "$1" && return 0; sleep 0.05; done
    echo "mount at $1 did not appear" >&2; exit 1
}

# --- the source tree: crates from cargo's registry, >= 4000 files -------------
tree_tar="$work/tree.tar"
if [[ ! -f "$tree_tar" ]]; then
    reg=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -1)
    list=()
    files=0
    for c in $(ls "$reg" | sort); do
        list+=("$c")
        files=$((files + $(find "$reg/$c" -type f | wc -l)))
        ((files >= 4000)) && break
    done
    tar cf "$tree_tar" -C "$reg" "${list[@]}"
fi
tree_files=$(tar tf "$tree_tar" | grep -vc '/$')
tree_mb=$(du -m "$tree_tar" | cut -f1)

# --- the three targets ------------------------------------------------------
start_drive() { # $1 = name
    local d="$work/$1"
    rm -rf "$d"; mkdir -p "$d/mnt"
    local env=()
    [[ -n "${NO_PASSTHROUGH:-}" ]] && env=(ECTS_NO_PASSTHROUGH=1)
    env "${env[@]}" "$ECTS_BIN" mount "$d/mnt" --data "$d/data" --cache "$d/cache" \
        --user bench --drain-timeout 600 >"$d/log" 2>&1 &
    pids+=($!)
    drive_pid=$!
    mounts+=("$d/mnt")
    wait_mounted "$d/mnt"
}
stop_drive() { # $1 = name
    kill -TERM "$drive_pid"
    wait "$drive_pid" || true
}
remount_drive() { # same data and cache, cold kernel caches
    local d="$work/$1"
    kill -TERM "$drive_pid"; wait "$drive_pid" || true
    local env=()
    [[ -n "${NO_PASSTHROUGH:-}" ]] && env=(ECTS_NO_PASSTHROUGH=1)
    env "${env[@]}" "$ECTS_BIN" mount "$d/mnt" --data "$d/data" --cache "$d/cache" \
        --user bench --drain-timeout 600 >>"$d/log" 2>&1 &
    pids+=($!)
    drive_pid=$!
    wait_mounted "$d/mnt"
}
have_rclone=0
command -v rclone >/dev/null && have_rclone=1
start_rclone() {
    local d="$work/rclone"
    rm -rf "$d"; mkdir -p "$d/remote" "$d/mnt" "$d/cache"
    rclone mount "$d/remote" "$d/mnt" --vfs-cache-mode writes --cache-dir "$d/cache" \
        >"$d/log" 2>&1 &
    pids+=($!)
    rclone_pid=$!
    mounts+=("$d/mnt")
    wait_mounted "$d/mnt"
}
remount_rclone() {
    local d="$work/rclone"
    fusermount3 -u "$d/mnt" || fusermount3 -u -z "$d/mnt"
    wait "$rclone_pid" || true
    rclone mount "$d/remote" "$d/mnt" --vfs-cache-mode writes --cache-dir "$d/cache" \
        >>"$d/log" 2>&1 &
    pids+=($!)
    rclone_pid=$!
    wait_mounted "$d/mnt"
}

declare -A untar findu w4k w1m
fio_bw() { # $1 = dir, $2 = bs; prints MiB/s
    fio --name=seq --directory="$1" --rw=write --bs="$2" --size="$FIO_SIZE" \
        --ioengine=psync --end_fsync=1 --numjobs=1 --output-format=json 2>/dev/null |
        python3 -c "import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index('{'):]); print(round(j['jobs'][0]['write']['bw_bytes']/1048576))"
    rm -f "$1"/seq.*
}
measure() { # $1 = label, $2 = dir, $3 = remount command
    local t0 t1
    sync
    mkdir -p "$2/tree"
    t0=$(now); tar xf "$tree_tar" -C "$2/tree"; t1=$(now)
    untar[$1]=$(elapsed "$t0" "$t1")
    $3
    # Inside tree/: at the drive's root, find and du would also walk .versions.
    t0=$(now); find "$2/tree" >/dev/null; du -s "$2/tree" >/dev/null; t1=$(now)
    findu[$1]=$(elapsed "$t0" "$t1")
    mkdir -p "$2/fio"
    w4k[$1]=$(fio_bw "$2/fio" 4k)
    w1m[$1]=$(fio_bw "$2/fio" 1M)
}

echo "tree: $tree_files files, $tree_mb MiB; fio size $FIO_SIZE; work dir $work" >&2
mkdir -p "$work/native"; rm -rf "${work:?}/native/"*
measure native "$work/native" true
start_drive drive
mode=$(grep -o 'kernel passthrough\|writeback cache\|no kernel cache' "$work/drive/log" | head -1)
measure drive "$work/drive/mnt" "remount_drive drive"
stop_drive drive
if ((have_rclone)); then
    start_rclone
    measure rclone "$work/rclone/mnt" remount_rclone
fi

# --- close() → version stored ------------------------------------------------
latency() { # $1 = mount dir, $2 = folder holding the user's versions; prints "p50 p99" in ms
    python3 - "$1" "$2" "$SAVES" <<'EOF'
import hashlib, os, sys, time
mnt, store, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lat = []
for i in range(n):
    data = f"save {i} {time.time_ns()}\n".encode() * 8
    sha = hashlib.sha256(data).hexdigest()
    target = os.path.join(store, "lat", "note.txt", sha + ".txt")
    with open(os.path.join(mnt, "lat", "note.txt"), "wb") as f:
        f.write(data)
    t0 = time.perf_counter()   # close() has returned
    while not os.path.exists(target):
        time.sleep(0.0005)
        if time.perf_counter() - t0 > 30:
            sys.exit(f"version {i} never arrived")
    lat.append((time.perf_counter() - t0) * 1000)
lat.sort()
print(f"{lat[len(lat)//2]:.1f} {lat[int(len(lat)*0.99)]:.1f}")
EOF
}
start_drive lat
mkdir -p "$work/lat/mnt/lat"
read -r p50 p99 < <(latency "$work/lat/mnt" "$work/lat/data/uploads/bench")
stop_drive lat
srv_line=""
if [[ -n "${SERVER:-}" ]]; then
    d="$work/srv"; rm -rf "$d"; mkdir -p "$d/mnt"
    echo pw >"$d/pw"
    "$ECTS_BIN" user add bench --data "$d/data" --password-file "$d/pw" >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$ECTS_BIN" server --data "$d/data" --listen "127.0.0.1:$port" >"$d/server.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break; sleep 0.05; done
    ECTS_PASSWORD=pw "$ECTS_BIN" mount "$d/mnt" --server "http://127.0.0.1:$port" --user bench \
        --cache "$d/cache" >"$d/log" 2>&1 &
    pids+=($!)
    drive_pid=$!
    mounts+=("$d/mnt")
    wait_mounted "$d/mnt"
    mkdir -p "$d/mnt/lat"
    read -r sp50 sp99 < <(latency "$d/mnt" "$d/data/uploads/bench")
    stop_drive srv
    srv_line="| close→stored, server on loopback (p50 / p99) | ${sp50} / ${sp99} ms | | |"
fi

# --- report -----------------------------------------------------------------
pct() { python3 -c "print(f'{100*$1/$2:.0f}%')"; }
ratio() { python3 -c "print(f'{$1/$2:.1f}×')"; }
echo
echo "Drive: $mode. Tree: $tree_files files, $tree_mb MiB. fio: $FIO_SIZE, psync, end_fsync."
echo
echo "| measure | native | drive | rclone (vfs writes) |"
echo "|---|---|---|---|"
rc() { ((have_rclone)) && echo "$1" || echo "n/a"; }
echo "| untar (s) | ${untar[native]} | ${untar[drive]} ($(ratio "${untar[drive]}" "${untar[native]}")) | $(rc "${untar[rclone]:-}") |"
echo "| find + du, cold FUSE caches (s) | ${findu[native]} | ${findu[drive]} ($(ratio "${findu[drive]}" "${findu[native]}")) | $(rc "${findu[rclone]:-}") |"
echo "| fio 4 KiB seq write (MiB/s) | ${w4k[native]} | ${w4k[drive]} ($(pct "${w4k[drive]}" "${w4k[native]}")) | $(rc "${w4k[rclone]:-}") |"
echo "| fio 1 MiB seq write (MiB/s) | ${w1m[native]} | ${w1m[drive]} ($(pct "${w1m[drive]}" "${w1m[native]}")) | $(rc "${w1m[rclone]:-}") |"
echo "| close→stored, embedded store (p50 / p99, $SAVES saves) | ${p50} / ${p99} ms | | |"
[[ -n "$srv_line" ]] && echo "$srv_line"
true
