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
# MODE=scale: does IOPS grow with a second poll group / reactor? Targets: vfnvme serve with
# `cores = 1` (pinned to TARGET_CPU) and with `cores = 2` (on CPUs 0 and 1), and with SPDK_DIR
# nvmf_tgt with one reactor (TARGET_CPU) and two (-m 0x3). Initiators with two I/O
# connections, on CPUs 0 and 1 (the machine has two, so target and initiator share them):
# spdk_nvme_perf -c 0x3 (two threads, one qpair each) and `vfnvme perf --qpairs 2` (one
# thread, both queues). 4 KiB and 128 KiB random reads, QD 32 per connection.
#
# Only one target polls at a time: nvmf_tgt's reactors always busy-poll, so an nvmf_tgt is
# stopped (SIGSTOP) while anything else is measured; vfnvme serve parks in epoll_wait when idle.
#
# Environment: MODE (unset, or scale), RUNS (3), SECONDS_PER_RUN (5), SPDK_DIR (unset: vfnvme
# alone), VFNVME_PORT (4420; scale: and +2), SPDK_PORT (4421; scale: and +2), TARGET_CPU (0),
# INITIATOR_CPU (1), KEEP (1: keep the logs dir), VFNVME_BIN (a vfnvme binary to measure
# instead of building this checkout's), VFNVME_BIN_B (a second vfnvme binary whose serve is
# measured in the same rounds, interleaved, by the same `vfnvme perf`, on VFNVME_PORT + 4: an
# A/B of two builds, e.g. this checkout against main without statistics; the two alternate
# which goes first from round to round; not with MODE=scale), SPDK_TRANSPORT_ARGS (options of
# nvmf_tgt's `nvmf_create_transport -t TCP`, e.g. `-o`: no C2H success optimization, so that
# nvmf_tgt sends a CapsuleResp after each read's data as vfnvme does while the host keeps SQ
# flow control on), VFNVME_TARGET_EXTRA (lines for vfnvme serve's [target], e.g.
# `c2h_success = true`: the SUCCESS flag as nvmf_tgt sets it by default).
set -euo pipefail

MODE=${MODE:-}
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
declare -A port_of nqn_of spdk_pid_of
serve_pids=()

cleanup() {
    local pid
    for pid in "${spdk_pid_of[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${serve_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
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

# start_serve NAME CORES CPUS PORT [BINARY]: a vfnvme serve with CORES poll groups, on CPUS.
start_serve() {
    local name=$1 cores=$2 cpus=$3 port=$4 binary=${5:-$vfnvme}
    # A management socket of its own: two serves (scale mode, an A/B) must not share the default.
    printf '%s\n' "[target]" "cores = $cores" "${VFNVME_TARGET_EXTRA:-}" "rpc_socket = \"$work/$name.sock\"" "" "[[listener]]" "address = \"127.0.0.1:$port\"" \
        "" "[[subsystem]]" "nqn = \"$VFNVME_NQN\"" "allow_any_host = true" "" \
        "[[subsystem.namespace]]" "nsid = 1" "ram_mib = 256" "block_size = 4096" \
        > "$work/$name.toml"
    taskset -c "$cpus" "$binary" serve --config "$work/$name.toml" 2> "$work/$name.log" &
    serve_pids+=($!)
    wait_for 30 grep -q serving "$work/$name.log" || { cat "$work/$name.log" >&2; exit 1; }
    port_of[$name]=$port
    nqn_of[$name]=$VFNVME_NQN
}

# start_spdk NAME CPUMASK PORT SHM_ID: an nvmf_tgt with a 256 MiB malloc namespace, stopped.
start_spdk() {
    local name=$1 mask=$2 port=$3 sock=$work/$1.sock
    rpc() { "$SPDK_DIR/scripts/rpc.py" -s "$sock" "$@"; }
    "$SPDK_DIR/build/bin/nvmf_tgt" --no-huge -s 1024 -i "$4" -m "$mask" -r "$sock" --disable-cpumask-locks \
        > "$work/$name.log" 2>&1 &
    spdk_pid_of[$name]=$!
    wait_for 60 rpc spdk_get_version || { cat "$work/$name.log" >&2; exit 1; }
    # shellcheck disable=SC2086 # SPDK_TRANSPORT_ARGS is a list of options
    rpc nvmf_create_transport -t TCP ${SPDK_TRANSPORT_ARGS:-} > /dev/null
    rpc bdev_malloc_create -b Malloc0 256 4096 > /dev/null
    rpc nvmf_create_subsystem "$SPDK_NQN" -a -s SPDK00000000000001 > /dev/null
    rpc nvmf_subsystem_add_ns "$SPDK_NQN" Malloc0 > /dev/null
    rpc nvmf_subsystem_add_listener "$SPDK_NQN" -t tcp -a 127.0.0.1 -s "$port" > /dev/null
    kill -STOP "${spdk_pid_of[$name]}"
    port_of[$name]=$port
    nqn_of[$name]=$SPDK_NQN
}

start_serve vfnvme 1 "$TARGET_CPU" "$VFNVME_PORT"
if [ "$MODE" = scale ]; then start_serve vfnvme2 2 0,1 "$((VFNVME_PORT + 2))"; fi
ab=
if [ -n "${VFNVME_BIN_B:-}" ] && [ "$MODE" != scale ]; then
    ab=1
    start_serve vfnvme_b 1 "$TARGET_CPU" "$((VFNVME_PORT + 4))" "$VFNVME_BIN_B"
fi

spdk=
if [ -n "${SPDK_DIR:-}" ]; then
    for f in build/bin/nvmf_tgt build/bin/spdk_nvme_perf scripts/rpc.py; do
        [ -x "$SPDK_DIR/$f" ] || { echo "bench-tcp: SPDK_DIR=$SPDK_DIR has no $f (build SPDK first)" >&2; exit 1; }
    done
    spdk=1
    start_spdk spdk "$((1 << TARGET_CPU))" "$SPDK_PORT" 1
    if [ "$MODE" = scale ]; then start_spdk spdk2 0x3 "$((SPDK_PORT + 2))" 2; fi
else
    echo "bench-tcp: SPDK_DIR is not set: measuring vfnvme alone (set SPDK_DIR to a built SPDK" \
        "to compare with its nvmf_tgt and spdk_nvme_perf)" >&2
fi

# One measurement: TARGET INITIATOR QD IO_SIZE [CONNECTIONS]; appends "workload target
# initiator iops mibs lat p50" to $results. One connection: the initiator on INITIATOR_CPU;
# two: on CPUs 0 and 1.
measure() {
    local target=$1 initiator=$2 qd=$3 size=$4 conns=${5:-1} port nqn out pid= cpus mask
    port=${port_of[$target]}
    nqn=${nqn_of[$target]}
    if [ -n "${spdk_pid_of[$target]:-}" ]; then pid=${spdk_pid_of[$target]}; kill -CONT "$pid"; fi
    if [ "$conns" = 1 ]; then cpus=$INITIATOR_CPU mask=$((1 << INITIATOR_CPU)); else cpus=0,1 mask=0x3; fi
    out=$work/$target-$initiator-q$qd-$size-c$conns.$run.out
    if [ "$initiator" = vfnvme ]; then
        taskset -c "$cpus" "$vfnvme" perf --connect "tcp://127.0.0.1:$port/$nqn" --qpairs "$conns" \
            -q "$qd" -o "$size" -w randread -t "$SECONDS_PER_RUN" --json > "$out" 2>> "$work/perf.log" \
            || echo "bench-tcp: vfnvme perf against $target failed with status $? (run $run; $work/perf.log)" >&2
        jq -r --arg w "q$qd-$size-c$conns" --arg t "$target" \
            '[$w, $t, "vfnvme", .iops, .mib_per_s, .lat_us.mean, .lat_us.p50] | @tsv' "$out" >> "$results"
    else
        "$SPDK_DIR/build/bin/spdk_nvme_perf" --no-huge -s 1024 -c "$mask" \
            -r "trtype:TCP adrfam:IPv4 traddr:127.0.0.1 trsvcid:$port subnqn:$nqn" \
            -q "$qd" -o "$size" -w randread -t "$SECONDS_PER_RUN" -L > "$out" 2>&1 \
            || echo "bench-tcp: spdk_nvme_perf against $target failed with status $? (run $run; $out)" >&2
        # "Total : IOPS MiB/s average min max" and, with -L, " 50.00000% : 12.3us" (µs; with
        # two cores, the first core's qpair).
        awk -v w="q$qd-$size-c$conns" -v t="$target" '
            /^Total/ { sub(/.*:/, ""); total = $1 "\t" $2 "\t" $3 }
            /^ *50\.00000% :/ && !p50 { p50 = $3; sub(/us/, "", p50) }
            END { print w "\t" t "\tspdk\t" total "\t" p50 }' "$out" >> "$results"
    fi
    if [ -n "$pid" ]; then kill -STOP "$pid"; fi
    return 0
}

: > "$results"
for run in $(seq "$RUNS"); do
    if [ "$MODE" = scale ]; then
        for size in 4096 131072; do
            echo "bench-tcp: scale round $run/$RUNS, QD 32 x 2 connections, $size bytes" >&2
            for target in vfnvme vfnvme2 ${spdk:+spdk spdk2}; do
                measure "$target" vfnvme 32 "$size" 2
                if [ -n "$spdk" ]; then measure "$target" spdk 32 "$size" 2; fi
            done
        done
        continue
    fi
    for workload in "1 4096" "32 4096" "32 131072"; do
        set -- $workload
        echo "bench-tcp: round $run/$RUNS, QD $1, $2 bytes" >&2
        # A/B: the order alternates by round, since the second of two back-to-back
        # measurements came out faster at QD 32 whichever binary it was.
        if [ -n "$ab" ] && [ $((run % 2)) = 0 ]; then
            measure vfnvme_b vfnvme "$1" "$2"
            measure vfnvme vfnvme "$1" "$2"
        else
            measure vfnvme vfnvme "$1" "$2"
            if [ -n "$ab" ]; then measure vfnvme_b vfnvme "$1" "$2"; fi
        fi
        if [ -n "$spdk" ]; then
            measure vfnvme spdk "$1" "$2"
            measure spdk spdk "$1" "$2"
        fi
    done
done

if [ -n "${spdk:-}" ] && [ -n "${SPDK_TRANSPORT_ARGS:-}" ]; then
    echo "nvmf_tgt's transport: nvmf_create_transport -t TCP $SPDK_TRANSPORT_ARGS"
fi
if [ -n "${VFNVME_TARGET_EXTRA:-}" ]; then
    echo "vfnvme serve's [target] adds: $VFNVME_TARGET_EXTRA"
fi
python3 - "$results" "$RUNS" "$SECONDS_PER_RUN" "${spdk:-0}" "$MODE" "${ab:-0}" <<'EOF'
import statistics, sys
path, runs, seconds, spdk, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]
ab = sys.argv[6] == "1"
rows = {}
for line in open(path):
    fields = line.rstrip("\n").split("\t")
    if len(fields) != 7 or "" in fields:
        continue  # a failed run (reported above)
    w, t, i, iops, mibs, lat, p50 = fields
    rows.setdefault((w, t, i), []).append((float(iops), float(mibs), float(lat), float(p50)))
def med(key, col):
    values = [r[col] for r in rows.get(key, [])]
    return statistics.median(values) if values else None
def cell(v, col):
    return "-" if v is None else (f"{v:,.1f}" if col >= 2 else f"{v:,.0f}")
def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"
uptime = open("/proc/loadavg").read().split()[:3]
if mode == "scale":
    print(f"\nMedians of {runs} interleaved runs of {seconds} s; two I/O connections, QD 32 each,"
          f" target and initiator sharing CPUs 0-1; load average at the end {' '.join(uptime)}.\n")
    print("| initiator | workload | vfnvme 1 group | vfnvme 2 groups | growth |"
          + (" nvmf_tgt 1 reactor | nvmf_tgt 2 reactors | growth | vfnvme / SPDK (2) |" if spdk else ""))
    print("|---" * (9 if spdk else 5) + "|")
    for i in ["vfnvme"] + (["spdk"] if spdk else []):
        for w, col, name in [("q32-4096-c2", 0, "4 KiB IOPS"), ("q32-131072-c2", 1, "128 KiB MiB/s")]:
            one, two = med((w, "vfnvme", i), col), med((w, "vfnvme2", i), col)
            line = f"| {i} | {name} | {cell(one, col)} | {cell(two, col)} | {ratio(two, one)} |"
            if spdk:
                s1, s2 = med((w, "spdk", i), col), med((w, "spdk2", i), col)
                line += f" {cell(s1, col)} | {cell(s2, col)} | {ratio(s2, s1)} | {ratio(two, s2)} |"
            print(line)
    sys.exit(0)
pairs = [("vfnvme", "vfnvme", "vfnvme serve + vfnvme perf")]
if ab:
    pairs += [("vfnvme_b", "vfnvme", "VFNVME_BIN_B serve + vfnvme perf")]
if spdk:
    pairs += [("vfnvme", "spdk", "vfnvme serve + spdk_nvme_perf"),
              ("spdk", "spdk", "nvmf_tgt + spdk_nvme_perf")]
metrics = [("q1-4096-c1", 2, "4 KiB randread QD1 mean latency (µs)"),
           ("q1-4096-c1", 3, "4 KiB randread QD1 median latency (µs)"),
           ("q1-4096-c1", 0, "4 KiB randread QD1 IOPS"),
           ("q32-4096-c1", 0, "4 KiB randread QD32 IOPS"),
           ("q32-4096-c1", 2, "4 KiB randread QD32 mean latency (µs)"),
           ("q32-131072-c1", 1, "128 KiB randread QD32 MiB/s")]
print(f"\nMedians of {runs} interleaved runs of {seconds} s; targets on one core, initiators on"
      f" another; load average at the end {' '.join(uptime)}.\n")
header = "| measurement | " + " | ".join(p[2] for p in pairs) + " |"
if ab:
    header += " A / B |"
if spdk:
    header += " vfnvme / SPDK (spdk_nvme_perf) | vfnvme perf / spdk_nvme_perf (vfnvme serve) |"
print(header)
print("|---" * (header.count("|") - 1) + "|")
for w, col, name in metrics:
    cells = [cell(med((w, t, i), col), col) for t, i, _ in pairs]
    line = f"| {name} | " + " | ".join(cells) + " |"
    if ab:
        line += f" {ratio(med((w, 'vfnvme', 'vfnvme'), col), med((w, 'vfnvme_b', 'vfnvme'), col))} |"
    if spdk:
        line += f" {ratio(med((w, 'vfnvme', 'spdk'), col), med((w, 'spdk', 'spdk'), col))} |"
        line += f" {ratio(med((w, 'vfnvme', 'vfnvme'), col), med((w, 'vfnvme', 'spdk'), col))} |"
    print(line)
if not spdk:
    print("\nSPDK_DIR not set: no comparison with SPDK nvmf_tgt.")
EOF
