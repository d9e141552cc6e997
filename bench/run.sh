#!/usr/bin/env bash
# Runs every benchmark of carto-wi-webhook and prints one markdown table (benches/RESULTS.md
# explains each number). About 6-8 minutes on 2 cores once built (a cold release build adds ~5).
#
#   bench/run.sh            # everything
#   RUNS=5 DURATION=5 bench/run.sh
#
# 1. in-process (criterion, benches/admission.rs): one review, parse + decide + respond, and the
#    decision alone; ServiceAccount, ConfigMap; 1..128 containers; 1..10,000 namespace configs.
# 2. memory (benches/memory.rs): heap of the config cache with 10,000 namespace ConfigMaps.
# 3. over the wire (examples/loadbench.rs): the release server (standalone, TLS) and the floor
#    server (examples/floor_server.rs) in the same run, HTTP/1.1 keep-alive and h2, saturation
#    and a fixed rate at 50 % of the floor's maximum; idle and peak RSS; start to /readyz.
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
cargo bench --quiet --no-run --bench admission --bench memory 2>/dev/null

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

# Instructions per review (callgrind): exact and repeatable, unlike time on a shared machine.
if command -v valgrind > /dev/null; then
    echo "== instructions per review (callgrind)" >&2
    MEMBIN=$(cargo bench --bench memory --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
    ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$MEMBIN" --repeat "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
    {
        echo "{"
        sep=""
        for c in parse parse_derived mutate_full validate_full; do
            a=$(ir "$c" 20); b=$(ir "$c" 220)
            printf '%s"%s": %d\n' "$sep" "$c" $(((b - a) / 200))
            sep=","
        done
        echo "}"
    } > "$OUT/instructions.json"
fi
echo "== over the wire: ${RUNS} runs × (floor, webhook) × (http/1.1, h2) × (saturation, fixed rate)" >&2
# Bounded: every phase has a fixed duration; the servers are killed when the run ends.
timeout 900 "${PIN_CLIENT[@]}" "$TARGET/release/examples/loadbench" wire \
    --server "$TARGET/release/carto-wi-webhook" \
    --floor "$TARGET/release/examples/floor_server" \
    --config tests/fixtures/configmap-valid.yaml \
    --out "$OUT" --runs "$RUNS" --duration "$DURATION" "${SERVER_CPUS[@]}"

{
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); rustc $(rustc --version | cut -d' ' -f2). Wire: servers on core 1, client on core 0; ${RUNS} runs of ${DURATION} s per phase, medians."
    echo
    "$TARGET/release/examples/loadbench" report --out "$OUT" --criterion "$TARGET/criterion" \
        --binary "$TARGET/release/carto-wi-webhook"
} | tee "$OUT/table.md"
