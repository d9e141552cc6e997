#!/usr/bin/env bash
# Rebuild the committed seed corpora: raw seeds from the fixtures (make.py), then libFuzzer's
# corpus minimisation (cargo fuzz cmin) keeps the smallest set with the same coverage.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 fuzz/seeds/make.py
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
for t in admission config review; do
  rm -rf "fuzz/corpus/$t" && mkdir -p "fuzz/corpus/$t"
  cp fuzz/seeds/raw/$t/* "fuzz/corpus/$t/"
  cargo fuzz cmin --sanitizer none --release --target-dir "$TARGET/fuzz" "$t" "fuzz/corpus/$t"
done
du -sh fuzz/corpus/*
