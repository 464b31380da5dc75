#!/usr/bin/env bash
# Builds authgate's fuzz targets and runs each for a bounded time on its
# committed seed corpus (what `./dev.sh test` and so CI run).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]    default: 30 s, every target
#
# cargo-fuzz needs nightly features; on this stable toolchain they are
# unlocked with RUSTC_BOOTSTRAP=1. `--sanitizer none`: authgate forbids
# unsafe code, so AddressSanitizer would find little and double the cold
# build; libFuzzer's coverage guidance and the targets' assertions remain.
# New inputs go to a scratch directory: the committed corpus stays the seeds
# (add an input to it by hand, e.g. a fixed crash). A crash stops the run
# with a non-zero status and leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs="${1:-30}"
[ $# -gt 0 ] && shift
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz" >&2
  nice -n 10 cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --codegen-units 16)

started=$(date +%s)
nice -n 10 cargo fuzz build "${flags[@]}"
built=$(date +%s)
echo "fuzz: targets built in $(( built - started ))s"

bin="fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release"
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && mapfile -t targets < <(cargo fuzz list)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/authgate-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
  echo "fuzz: $t for ${secs}s"
  status=0
  # The binary `cargo fuzz run` would start, without its second build check.
  nice -n 10 "$bin/$t" "$scratch/$t" "fuzz/corpus/$t" \
    -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 >"$scratch/$t.log" 2>&1 || status=$?
  # libFuzzer's progress lines stay in the log; show the summary.
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|Done [0-9]+ runs' "$scratch/$t.log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz: $t FAILED (the input is in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, build $(( built - started ))s, runs $(( $(date +%s) - built ))s"
