#!/bin/bash
# The IPVS benchmark (issue 3): programs SERVICES x DESTS real servers into an empty IPVS table
# three ways and reads it back two ways, all inside ONE guest boot, and prints a table.
#
#   tests/bench/ipvs-bench.sh BENCH_BINARY [SERVICES [DESTS]]     (default 10000 x 10)
#
# On the host it re-runs itself in the guest (tests/vm/guest.py). Each method gets its own fresh
# network namespace, because IPVS tables are per namespace and because flushing and
# reprogramming would hit the kernel's destination trash (kernel-test-vm.md). Namespaces are not
# deleted: their tables stay, and since all namespaces share the kernel's 256-bucket service
# hash, every later method runs against a fuller hash. The library's batched path runs last so
# that this bias works against it.
set -euo pipefail

bench=${1:?usage: ipvs-bench.sh BENCH_BINARY [SERVICES [DESTS]]}
services=${2:-10000}
dests=${3:-10}
here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${KUBE_IPVS_IN_GUEST:-}" ]; then
    bench=$(cd "$(dirname "$bench")" && pwd)/$(basename "$bench")
    exec python3 "$here/../vm/guest.py" run --timeout 1800 -- \
        "$here/ipvs-bench.sh" "$bench" "$services" "$dests"
fi

ops=$((services * (dests + 1)))
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
field() { sed -n "s/^$1=//p"; }

new_ns() {
    ip netns add "$1"
    ip -n "$1" link set lo up
    # IPVS refuses masquerade real servers it has no route to: a dummy uplink with a default
    # route covers every address.
    ip -n "$1" link add uplink type dummy
    ip -n "$1" link set uplink up
    ip -n "$1" addr add 10.255.255.1/32 dev uplink
    ip -n "$1" route add default dev uplink
}

table_sum() { ip netns exec "$1" ipvsadm -S -n | sort | md5sum | cut -d' ' -f1; }

rules=/tmp/ipvs-bench.rules
"$bench" gen "$services" "$dests" "$rules"

echo "IPVS benchmark: $services services x $dests real servers = $ops requests," \
    "kernel $(uname -r), guest under software emulation"

# 1. ipvsadm -R: one request, one wait for its ack, per line.
new_ns kipvs-restore
t0=$(now)
ip netns exec kipvs-restore ipvsadm -R <"$rules"
t1=$(now)
restore=$(secs "$t0" "$t1")
echo "1/3 ipvsadm -R done in ${restore}s (netns kipvs-restore)"

# 2. The library, one apply() per op: the same per-request round trip as ipvsadm.
new_ns kipvs-single
t0=$(now)
out=$(ip netns exec kipvs-single "$bench" single "$services" "$dests")
t1=$(now)
single=$(secs "$t0" "$t1")
single_in=$(echo "$out" | field seconds)
echo "2/3 library one op per apply() done in ${single}s (netns kipvs-single)"

# 3. The library, one batched apply(), last.
new_ns kipvs-batched
t0=$(now)
out=$(ip netns exec kipvs-batched "$bench" batched "$services" "$dests")
t1=$(now)
batched=$(secs "$t0" "$t1")
batched_in=$(echo "$out" | field seconds)
batched_send=$(echo "$out" | field sendmsg)
batched_recv=$(echo "$out" | field recvmmsg)
echo "3/3 library batched apply() done in ${batched}s (netns kipvs-batched)"

sum_restore=$(table_sum kipvs-restore)
sum_single=$(table_sum kipvs-single)
sum_batched=$(table_sum kipvs-batched)
lines=$(ip netns exec kipvs-batched ipvsadm -S -n | wc -l)

# Reading back from the batched namespace, alternating, best of three each.
best_save=""
best_walk=""
best_walk_in=""
walk_services=0
walk_dests=0
for round in 1 2 3; do
    t0=$(now)
    ip netns exec kipvs-batched ipvsadm -S -n >/dev/null
    t1=$(now)
    s=$(secs "$t0" "$t1")
    t0=$(now)
    out=$(ip netns exec kipvs-batched "$bench" walk)
    t1=$(now)
    w=$(secs "$t0" "$t1")
    w_in=$(echo "$out" | field seconds)
    walk_services=$(echo "$out" | field services)
    walk_dests=$(echo "$out" | field dests)
    echo "read-back round $round: ipvsadm -Sn ${s}s, walk() ${w}s"
    best_save=$(awk -v a="$best_save" -v b="$s" 'BEGIN { print (a == "" || b < a) ? b : a }')
    best_walk=$(awk -v a="$best_walk" -v b="$w" 'BEGIN { print (a == "" || b < a) ? b : a }')
    best_walk_in=$(awk -v a="$best_walk_in" -v b="$w_in" 'BEGIN { print (a == "" || b < a) ? b : a }')
done

ratio() { awk -v base="$1" -v x="$2" 'BEGIN { printf "%.2fx", base / x }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

echo
echo "Order: 1) ipvsadm -R, 2) library one op per apply(), 3) library batched apply(), each in"
echo "its own fresh network namespace. Earlier namespaces were not deleted: their tables (up to"
echo "$((2 * services)) services) still share the kernel's 256-bucket service hash with later runs."
echo "Times are wall clock around the whole process (inside-the-library time in brackets)."
echo
printf '%-38s %12s %12s %22s\n' "programming $ops requests" "seconds" "requests/s" "speed vs ipvsadm -R"
printf '%-38s %12s %12s %22s\n' "ipvsadm -R" "$restore" "$(rate "$ops" "$restore")" "1.00x"
printf '%-38s %12s %12s %22s\n' "library, one op per apply()" "$single [$single_in]" \
    "$(rate "$ops" "$single")" "$(ratio "$restore" "$single")"
printf '%-38s %12s %12s %22s\n' "library, batched apply()" "$batched [$batched_in]" \
    "$(rate "$ops" "$batched")" "$(ratio "$restore" "$batched")"
echo "  (batched: $batched_send sendmsg() and $batched_recv recvmmsg() calls)"
echo
printf '%-38s %12s %12s %22s\n' "reading back, best of 3" "seconds" "lines/s" "speed vs ipvsadm -Sn"
printf '%-38s %12s %12s %22s\n' "ipvsadm -S -n" "$best_save" "$(rate "$lines" "$best_save")" "1.00x"
printf '%-38s %12s %12s %22s\n' "library walk()" "$best_walk [$best_walk_in]" \
    "$(rate "$lines" "$best_walk")" "$(ratio "$best_save" "$best_walk")"
echo
status=0
check() {
    if [ "$2" = 1 ]; then echo "PASS  $1"; else echo "FAIL  $1"; status=1; fi
}
check "batched apply() at least 5x faster than ipvsadm -R ($(ratio "$restore" "$batched"))" \
    "$(awk -v r="$restore" -v b="$batched" 'BEGIN { print (r >= 5 * b) ? 1 : 0 }')"
check "walk() no slower than ipvsadm -S -n ($(ratio "$best_save" "$best_walk"))" \
    "$(awk -v s="$best_save" -v w="$best_walk" 'BEGIN { print (w <= s) ? 1 : 0 }')"
check "the three tables are identical (ipvsadm -S -n | sort | md5sum: $sum_batched)" \
    "$([ "$sum_restore" = "$sum_batched" ] && [ "$sum_single" = "$sum_batched" ] && echo 1 || echo 0)"
check "walk() saw $walk_services services and $walk_dests real servers ($lines ipvsadm lines)" \
    "$([ "$walk_services" = "$services" ] && [ "$walk_dests" = "$((services * dests))" ] &&
        [ "$lines" = "$ops" ] && echo 1 || echo 0)"
exit $status
