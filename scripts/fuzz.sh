#!/usr/bin/env bash
# Fuzzes the untrusted-input parsers (fuzz/fuzz_targets: request parts, JWT
# verification, quota strings) with cargo-fuzz, each for a bounded time
# and a fixed seed, starting from the committed corpora in fuzz/corpus.
#
#   scripts/fuzz.sh                  # 20 s per target (what CI runs)
#   FUZZ_SECONDS=600 scripts/fuzz.sh jwt_verify
#   FUZZ_SEED=7 scripts/fuzz.sh      # another seed (default 1)
#   FUZZ_GROW=1 scripts/fuzz.sh      # keep new inputs in fuzz/corpus
#   FUZZ_TOOLCHAIN=stable scripts/fuzz.sh   # no sanitizer, even with nightly
#
# Installs cargo-fuzz (crates.io) under ~/.cache/flashsale on first use.
# With a nightly toolchain installed, runs under AddressSanitizer; on
# stable, cargo-fuzz runs with `--sanitizer none` (still coverage-guided;
# Rust's own checks catch panics and overflows). A crash fails the script
# and leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION="0.13.1"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"
SEED="${FUZZ_SEED:-1}"
TOOLS="${FLASHSALE_TOOLS_DIR:-$HOME/.cache/flashsale}/cargo-fuzz-$CARGO_FUZZ_VERSION"
log() { printf 'fuzz: %s\n' "$*" >&2; }

if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS (first use only, about 2 minutes)"
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi
export PATH="$TOOLS/bin:$PATH"

# Nightly, if there is one, for AddressSanitizer; never assumed.
# FUZZ_TOOLCHAIN=stable forces the stable path.
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly) sanitizer=address
else
    toolchain=() sanitizer=none
fi
log "toolchain: $(cargo "${toolchain[@]}" --version), sanitizer: $sanitizer, seed $SEED, ${SECONDS_PER_TARGET}s per target"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list --fuzz-dir fuzz)
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "$scratch/$t"
    # New inputs go to a scratch corpus unless FUZZ_GROW is set, so a CI run
    # leaves the committed corpus as it was.
    if [ -n "${FUZZ_GROW:-}" ]; then corpora=("fuzz/corpus/$t"); else corpora=("$scratch/$t" "fuzz/corpus/$t"); fi
    log "$t: running"
    cargo "${toolchain[@]}" fuzz run --fuzz-dir fuzz --sanitizer "$sanitizer" "$t" "${corpora[@]}" -- \
        -seed="$SEED" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 2>"$scratch/$t.log" || {
        tail -n 40 "$scratch/$t.log" >&2
        log "$t: FAILED; the input is in fuzz/artifacts/$t/ (reproduce: cargo fuzz run --fuzz-dir fuzz $t <file>)"
        exit 1
    }
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$scratch/$t.log" | tail -n 1 || true)
    log "$t: passed, $runs inputs, $cov"
done
