#!/usr/bin/env bash
# `make bench-tcp`: the NVMe/TCP target on loopback, and against SPDK's nvmf_tgt when SPDK_DIR
# points at a built SPDK (see BENCHMARKS.md, "NVMe/TCP target on loopback").
#
# vfnvme serve: one poll group pinned to core 0, a 256 MiB RAM namespace of 4 KiB blocks.
# Initiators on core 1: `vfnvme perf --connect` always; with SPDK_DIR also spdk_nvme_perf, which
# then drives both vfnvme serve and SPDK's nvmf_tgt (one reactor on core 0, a malloc bdev of
# 256 MiB and 4 KiB blocks). Workloads: 4 KiB random reads at QD 1 and QD 32, 128 KiB random
# reads at QD 32. Every (target, initiator) pair runs once per round, RUNS rounds, interleaved;
# the table shows medians, and vfnvme/SPDK ratios of the medians with the same initiator.
#
# Only one target polls at a time: nvmf_tgt's reactor always busy-polls, so it is stopped
# (SIGSTOP) while vfnvme is measured; vfnvme serve parks in epoll_wait when idle.
#
# Environment: RUNS (3), SECONDS_PER_RUN (5), SPDK_DIR (unset: vfnvme alone), VFNVME_PORT
# (4420), SPDK_PORT (4421), TARGET_CPU (0), INITIATOR_CPU (1), KEEP (1: keep the logs dir),
# VFNVME_BIN (a vfnvme binary to measure instead of building this checkout's).
set -euo pipefail

RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
VFNVME_PORT=${VFNVME_PORT:-4420}
SPDK_PORT=${SPDK_PORT:-4421}
TARGET_CPU=${TARGET_CPU:-0}
INITIATOR_CPU=${INITIATOR_CPU:-1}
VFNVME_NQN=nqn.2026-11.io.vfnvme:bench
SPDK_NQN=nqn.2016-06.io.spdk:bench

cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/vfnvme-bench-tcp.XXXXXX)
results=$work/results.tsv
serve_pid=
spdk_pid=

cleanup() {
    [ -n "$spdk_pid" ] && { kill -CONT "$spdk_pid" 2>/dev/null || true; kill "$spdk_pid" 2>/dev/null || true; }
    [ -n "$serve_pid" ] && kill -INT "$serve_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "logs in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

if [ -n "${VFNVME_BIN:-}" ]; then
    vfnvme=$VFNVME_BIN
else
    echo "bench-tcp: building the release binary" >&2
    cargo build --release -q -p vfnvme-tools --bin vfnvme
    vfnvme=build/release/vfnvme
fi

cat > "$work/serve.toml" <<EOF
[target]
cores = 1

[[listener]]
address = "127.0.0.1:$VFNVME_PORT"

[[subsystem]]
nqn = "$VFNVME_NQN"
allow_any_host = true

[[subsystem.namespace]]
nsid = 1
ram_mib = 256
block_size = 4096
EOF
taskset -c "$TARGET_CPU" "$vfnvme" serve --config "$work/serve.toml" 2> "$work/serve.log" &
serve_pid=$!
wait_for 30 grep -q serving "$work/serve.log" || { cat "$work/serve.log" >&2; exit 1; }

spdk=
if [ -n "${SPDK_DIR:-}" ]; then
    for f in build/bin/nvmf_tgt build/bin/spdk_nvme_perf scripts/rpc.py; do
        [ -x "$SPDK_DIR/$f" ] || { echo "bench-tcp: SPDK_DIR=$SPDK_DIR has no $f (build SPDK first)" >&2; exit 1; }
    done
    spdk=1
    sock=$work/spdk.sock
    rpc() { "$SPDK_DIR/scripts/rpc.py" -s "$sock" "$@"; }
    "$SPDK_DIR/build/bin/nvmf_tgt" --no-huge -s 1024 -m "$((1 << TARGET_CPU))" -r "$sock" \
        > "$work/nvmf_tgt.log" 2>&1 &
    spdk_pid=$!
    wait_for 60 rpc spdk_get_version || { cat "$work/nvmf_tgt.log" >&2; exit 1; }
    rpc nvmf_create_transport -t TCP > /dev/null
    rpc bdev_malloc_create -b Malloc0 256 4096 > /dev/null
    rpc nvmf_create_subsystem "$SPDK_NQN" -a -s SPDK00000000000001 > /dev/null
    rpc nvmf_subsystem_add_ns "$SPDK_NQN" Malloc0 > /dev/null
    rpc nvmf_subsystem_add_listener "$SPDK_NQN" -t tcp -a 127.0.0.1 -s "$SPDK_PORT" > /dev/null
    kill -STOP "$spdk_pid"
else
    echo "bench-tcp: SPDK_DIR is not set: measuring vfnvme alone (set SPDK_DIR to a built SPDK" \
        "to compare with its nvmf_tgt and spdk_nvme_perf)" >&2
fi

# One measurement: TARGET INITIATOR QD IO_SIZE; appends "workload target initiator iops mibs lat" to $results.
measure() {
    local target=$1 initiator=$2 qd=$3 size=$4 port nqn out
    if [ "$target" = spdk ]; then port=$SPDK_PORT nqn=$SPDK_NQN; kill -CONT "$spdk_pid"
    else port=$VFNVME_PORT nqn=$VFNVME_NQN; fi
    out=$work/$target-$initiator-q$qd-$size.$run.out
    if [ "$initiator" = vfnvme ]; then
        taskset -c "$INITIATOR_CPU" "$vfnvme" perf --connect "tcp://127.0.0.1:$port/$nqn" \
            -q "$qd" -o "$size" -w randread -t "$SECONDS_PER_RUN" --json > "$out" 2>> "$work/perf.log"
        jq -r --arg w "q$qd-$size" --arg t "$target" \
            '[$w, $t, "vfnvme", .iops, .mib_per_s, .lat_us.mean, .lat_us.p50] | @tsv' "$out" >> "$results"
    else
        "$SPDK_DIR/build/bin/spdk_nvme_perf" --no-huge -s 1024 -c "$((1 << INITIATOR_CPU))" \
            -r "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:$port subnqn:$nqn" \
            -q "$qd" -o "$size" -w randread -t "$SECONDS_PER_RUN" -L > "$out" 2>&1
        # "Total : IOPS MiB/s average min max" and, with -L, " 50.00000% : 12.3us" (µs).
        awk -v w="q$qd-$size" -v t="$target" '
            /^Total/ { sub(/.*:/, ""); total = $1 "\t" $2 "\t" $3 }
            /^ *50\.00000% :/ && !p50 { p50 = $3; sub(/us/, "", p50) }
            END { print w "\t" t "\tspdk\t" total "\t" p50 }' "$out" >> "$results"
    fi
    [ "$target" = spdk ] && kill -STOP "$spdk_pid"
    return 0
}

: > "$results"
for run in $(seq "$RUNS"); do
    for workload in "1 4096" "32 4096" "32 131072"; do
        set -- $workload
        echo "bench-tcp: round $run/$RUNS, QD $1, $2 bytes" >&2
        measure vfnvme vfnvme "$1" "$2"
        if [ -n "$spdk" ]; then
            measure vfnvme spdk "$1" "$2"
            measure spdk spdk "$1" "$2"
        fi
    done
done

python3 - "$results" "$RUNS" "$SECONDS_PER_RUN" "${spdk:-0}" <<'EOF'
import statistics, sys
path, runs, seconds, spdk = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
rows = {}
for line in open(path):
    w, t, i, iops, mibs, lat, p50 = line.split("\t")
    rows.setdefault((w, t, i), []).append((float(iops), float(mibs), float(lat), float(p50)))
def med(key, col):
    values = [r[col] for r in rows.get(key, [])]
    return statistics.median(values) if values else None
pairs = [("vfnvme", "vfnvme", "vfnvme serve + vfnvme perf")]
if spdk:
    pairs += [("vfnvme", "spdk", "vfnvme serve + spdk_nvme_perf"),
              ("spdk", "spdk", "nvmf_tgt + spdk_nvme_perf")]
metrics = [("q1-4096", 2, "4 KiB randread QD1 mean latency (µs)"),
           ("q1-4096", 3, "4 KiB randread QD1 median latency (µs)"),
           ("q1-4096", 0, "4 KiB randread QD1 IOPS"),
           ("q32-4096", 0, "4 KiB randread QD32 IOPS"),
           ("q32-4096", 2, "4 KiB randread QD32 mean latency (µs)"),
           ("q32-131072", 1, "128 KiB randread QD32 MiB/s")]
print(f"\nMedians of {runs} interleaved runs of {seconds} s; targets on one core, initiators on another.\n")
header = "| measurement | " + " | ".join(p[2] for p in pairs) + " |"
if spdk:
    header += " vfnvme / SPDK (spdk_nvme_perf) |"
print(header)
print("|---" * (header.count("|") - 1) + "|")
for w, col, name in metrics:
    cells = []
    for t, i, _ in pairs:
        v = med((w, t, i), col)
        cells.append("-" if v is None else (f"{v:,.1f}" if col >= 2 else f"{v:,.0f}"))
    line = f"| {name} | " + " | ".join(cells) + " |"
    if spdk:
        ours, theirs = med((w, "vfnvme", "spdk"), col), med((w, "spdk", "spdk"), col)
        line += f" {ours / theirs:.2f} |" if ours and theirs else " - |"
    print(line)
if not spdk:
    print("\nSPDK_DIR not set: no comparison with SPDK nvmf_tgt.")
EOF
