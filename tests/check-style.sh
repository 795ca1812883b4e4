#!/bin/sh
# clang-format and clang-tidy over the project's own C++ sources.
#   tests/check-style.sh format            check formatting (no changes)
#   tests/check-style.sh format --fix      reformat in place
#   tests/check-style.sh tidy BUILD_DIR    clang-tidy with BUILD_DIR's compile_commands.json
set -eu
cd "$(dirname "$0")/.."
sources() {
    git ls-files -- '*.cpp' '*.h' 2>/dev/null | grep -E '^(ipvs|k8s-client|proxy|tests)/' || true
}
case "${1:-}" in
format)
    if [ "${2:-}" = "--fix" ]; then
        sources | xargs -r clang-format -i
    else
        sources | xargs -r clang-format --dry-run --Werror
    fi
    ;;
tidy)
    build=${2:?usage: check-style.sh tidy BUILD_DIR}
    # Library and daemon sources; test files are Catch2 macro soup that tidy only slows down on.
    git ls-files -- '*.cpp' | grep -E '^(ipvs|k8s-client|proxy)/' |
        xargs -r -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet 2>/dev/null
    ;;
*)
    echo "usage: $0 format [--fix] | tidy BUILD_DIR" >&2
    exit 2
    ;;
esac
