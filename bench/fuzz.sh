#!/usr/bin/env bash
# The long fuzzing run: each fuzz target of fuzz/ in turn, from its committed corpus, for a number
# of inputs (default 10 million each) or a time per target, at low priority; prints each target's
# executions, rate and outcome. New inputs go to target/fuzz-long/<target>/ (not the committed
# corpus); crashes to target/fuzz-long/crashes/<target>/.
#
#   bench/fuzz.sh                          # every target, 10^7 inputs each
#   RUNS=100000000 bench/fuzz.sh admission # one target, 10^8 inputs
#   SECONDS_EACH=600 bench/fuzz.sh         # 10 minutes per target instead
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); runs on the stable toolchain (no
# sanitizer: safe Rust, and a panic is what the targets report).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-10000000}"
SECONDS_EACH="${SECONDS_EACH:-0}"
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
OUT="$TARGET/fuzz-long"
FLAGS=(--sanitizer none --release --target-dir "$TARGET/fuzz")
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(admission config review)

dict() { case "$1" in admission) echo fuzz/admission.dict ;; *) echo fuzz/yaml.dict ;; esac; }

nice -n 10 cargo fuzz build "${FLAGS[@]}"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$OUT/$t" "$OUT/crashes/$t"
  bound=(-runs="$RUNS")
  [ "$SECONDS_EACH" = 0 ] || bound=(-max_total_time="$SECONDS_EACH")
  start=$(date +%s)
  if nice -n 10 cargo fuzz run "${FLAGS[@]}" "$t" "$OUT/$t" "fuzz/corpus/$t" -- \
      "${bound[@]}" -dict="$(dict "$t")" -artifact_prefix="$OUT/crashes/$t/" \
      -timeout=60 -print_final_stats=1 2>"$OUT/$t.log"; then
    outcome="0 crashes"
  else
    outcome="FAILED (see $OUT/$t.log and $OUT/crashes/$t/)"
    status=1
  fi
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$OUT/$t.log" | tail -1)
  echo "$t: ${execs:-?} executions in ${secs} s (${rate:-?}/s), $outcome"
done
exit $status
