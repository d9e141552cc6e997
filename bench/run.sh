#!/usr/bin/env bash
# Runs every benchmark of carto-wi-webhook and prints one markdown table (bench/RESULTS.md
# explains each number). About 8-9 minutes on 2 cores once built (a cold release build, fat LTO, adds ~10).
#
#   bench/run.sh            # everything
#   RUNS=5 DURATION=5 bench/run.sh
#
# 1. in-process (criterion, bench/admission.rs): one review, parse + decide + respond, and the
#    decision alone; ServiceAccount, ConfigMap; 1..128 containers; 1..10,000 namespace configs.
# 2. memory (bench/memory.rs): heap of the config cache with 10,000 namespace ConfigMaps.
# 3. instructions (callgrind, when valgrind is installed): one review in-process
#    (bench/memory.rs) and one request through the real admission router and through the
#    floor's (bench/router.rs), body in, bytes out.
# 4. over the wire (bench/loadbench.rs): the release server (standalone, TLS) and the floor
#    server (bench/floor_server.rs) in the same run, HTTP/1.1 keep-alive and h2: saturation,
#    then open loop at 2,000 req/s and at 50 % of each server's own maximum; idle and peak RSS;
#    start to /readyz.
#    Servers run on core 1, the client on core 0 (one core each), when there are 2+ cores.
# Results (JSON and the table) land in target/bench-results/ (or $CARGO_TARGET_DIR/...).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"            # wire runs; the table shows medians
DURATION="${DURATION:-4}"    # seconds measured per wire phase (after 1 s of warm-up)
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET/bench-results"
rm -rf "$OUT" && mkdir -p "$OUT"

echo "== build (release)" >&2
cargo build --release --quiet --bin carto-wi-webhook --example floor_server --example loadbench
cargo bench --quiet --no-run --bench admission --bench memory --bench router 2>/dev/null

PIN_CLIENT=()
PIN_SERVER=()
SERVER_CPUS=()
if [ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null; then
    PIN_CLIENT=(taskset -c 0)
    PIN_SERVER=(taskset -c 1)
    SERVER_CPUS=(--server-cpus 1)
fi

echo "== in-process (criterion)" >&2
"${PIN_SERVER[@]}" cargo bench --quiet --bench admission 2>&1 | grep -E '^[a-z].*|time:' > "$OUT/criterion.txt" || true
echo "== memory (counting allocator)" >&2
BENCH_OUT="$OUT" cargo bench --quiet --bench memory > "$OUT/memory.txt"

# Instructions (callgrind): exact and repeatable, unlike time on a shared machine. A case's cost
# is the difference between 1,020 and 20 repetitions, divided by 1,000 (start-up cancels out).
# The router cases log one JSON line per review on standard error, as the server does: to
# /dev/null here; valgrind's own report goes to a file.
if command -v valgrind > /dev/null; then
    echo "== instructions per review and per routed request (callgrind)" >&2
    bench_bin() { cargo bench --bench "$1" --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1; }
    MEMBIN=$(bench_bin memory)
    ROUTERBIN=$(bench_bin router)
    ir() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null --log-file="$OUT/callgrind.log" \
            "$1" --repeat "$2" "$3" > /dev/null 2>&1 ||
            { echo "callgrind: $2 failed (rerun: $1 --repeat $2 1)" >&2; return 1; }
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$OUT/callgrind.log"
    }
    {
        echo "{"
        sep=""
        for c in memory:parse memory:parse_derived memory:mutate_full memory:validate_full \
            router:router_mutate router:router_validate router:floor \
            router:router_mutate_unlogged; do
            bin=$MEMBIN
            [ "${c%%:*}" = router ] && bin=$ROUTERBIN
            a=$(ir "$bin" "${c#*:}" 20); b=$(ir "$bin" "${c#*:}" 1020)
            printf '%s"%s": %d\n' "$sep" "${c#*:}" $(((b - a) / 1000))
            sep=","
        done
        # Linearity in the object's size: mutate full of N containers × 50 env.
        for n in 1 8 32 128; do
            a=$(ir "$MEMBIN" "size_$n" 10); b=$(ir "$MEMBIN" "size_$n" 60)
            printf ',"size_%s": %d\n' "$n" $(((b - a) / 50))
        done
        echo "}"
    } > "$OUT/instructions.json"
fi
echo "== over the wire: ${RUNS} runs × (floor, webhook) × (http/1.1, h2) × (saturation, 2,000 req/s, 50 % of max)" >&2
# Bounded: every phase has a fixed duration; the servers are killed when the run ends.
timeout 900 "${PIN_CLIENT[@]}" "$TARGET/release/examples/loadbench" wire \
    --server "$TARGET/release/carto-wi-webhook" \
    --floor "$TARGET/release/examples/floor_server" \
    --config tests/fixtures/configmap-valid.yaml \
    --out "$OUT" --runs "$RUNS" --duration "$DURATION" --rate 2000 "${SERVER_CPUS[@]}"

{
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); rustc $(rustc --version | cut -d' ' -f2). Wire: servers on core 1, client on core 0; ${RUNS} runs of ${DURATION} s per phase, medians."
    echo
    "$TARGET/release/examples/loadbench" report --out "$OUT" --criterion "$TARGET/criterion" \
        --binary "$TARGET/release/carto-wi-webhook"
} | tee "$OUT/table.md"
