#!/bin/sh
# Builds the libFuzzer targets with clang (ASan+UBSan, build dir build-fuzz) and runs each one
# for a bounded time from its seed corpus plus every known reproducer. Prints one TAP line per
# target; a crash or a broken invariant fails that line and leaves the input in
# build-fuzz/fuzz-artifacts/<target>/. To keep it, copy it into tests/fuzz/regressions/<target>/
# (the unit test unit-fuzz-regressions replays it from then on) and add a test case that states
# what the input must do, as regression_test.cpp does for the others.
#
#   tests/fuzz/run-fuzzers.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, all targets)
#   tests/fuzz/run-fuzzers.sh --ci [TARGET...]
#
# --ci is what tests/run-all.sh runs: a fixed seed and a fixed number of inputs per target
# (about 20 s each), so CI explores much the same inputs for a commit on any machine (address
# layout can still vary coverage slightly); a timed run explores more and differently each
# time, which is for looking, not for gating.
set -u
cd "$(dirname "$0")/../.."
ci=false
if [ "${1:-}" = "--ci" ]; then
    ci=true
    shift
    seconds=0
else
    seconds=${1:-60}
    [ $# -gt 0 ] && shift
fi
targets=${*:-"fuzz_watch_stream fuzz_objects fuzz_kubeconfig fuzz_proxy_config fuzz_ipvs_netlink"}
build=build-fuzz

if [ ! -f "$build/build.ninja" ]; then
    CC=clang CXX=clang++ meson setup "$build" -Dfuzz=true -Dkernel_tests=false \
        --buildtype=debugoptimized >/dev/null || {
        echo "not ok 1 - configure $build with clang"
        echo "1..1"
        exit 1
    }
fi
# shellcheck disable=SC2086
if ! ninja -C "$build" $(for t in $targets; do printf 'tests/fuzz/%s ' "$t"; done) >/dev/null; then
    ninja -C "$build" $(for t in $targets; do printf 'tests/fuzz/%s ' "$t"; done) | tail -30
    echo "not ok 1 - build the fuzz targets"
    echo "1..1"
    exit 1
fi

n=0
failed=0
for t in $targets; do
    n=$((n + 1))
    work=$(mktemp -d)
    artifacts="$build/fuzz-artifacts/$t"
    rm -rf "$artifacts"
    mkdir -p "$artifacts"
    cp tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null
    cp tests/fuzz/regressions/"$t"/* "$work"/ 2>/dev/null
    log="$artifacts/log.txt"
    if $ci; then
        case $t in
        fuzz_ipvs_netlink) budget="-seed=1 -runs=400000" ;;
        fuzz_watch_stream) budget="-seed=1 -runs=20000" ;;
        *) budget="-seed=1 -runs=40000" ;;
        esac
    else
        budget="-max_total_time=$seconds"
    fi
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a blow-up.
    # shellcheck disable=SC2086
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$build/tests/fuzz/$t" $budget -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" >"$log" 2>&1
    rc=$?
    what=$(echo "$budget" | sed 's/-max_total_time=\([0-9]*\)/\1 s/')
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    rm -rf "$work"
    if [ $rc -eq 0 ]; then
        echo "ok $n - $t: $what, ${execs:-?} inputs, ${cov:-cov: ?}, no crash"
    else
        failed=$((failed + 1))
        echo "not ok $n - $t: exit $rc, input kept in $artifacts (log: $log)"
        grep -E 'ERROR|SUMMARY|fuzz invariant failed|runtime error' "$log" | head -10 | sed 's/^/# /'
    fi
done
echo "1..$n"
[ $failed -eq 0 ]
