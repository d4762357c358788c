#!/usr/bin/env bash
# Runs benchmarks of one package in turns, each in its own process, the
# order rotated from round to round, so that the drifting load of a shared
# machine falls on all of them alike:
#   scripts/bench-turns.sh PKG 'BenchA BenchB ...' [ROUNDS] [BENCHTIME] [METRIC]
# Names are -test.bench patterns anchored at both ends (sub-benchmarks as
# 'BenchmarkX/mode=on'). METRIC (default cpu-ns/op, which the benchmark must
# report; ns/op works too) is read from each run. Prints every round and,
# for each benchmark after the first, the median of the rounds' ratios to
# the first and their range.
set -euo pipefail
pkg=$1 benches=$2 rounds=${3:-10} benchtime=${4:-1s} metric=${5:-cpu-ns/op}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$(git rev-parse --show-toplevel)
(cd "$root" && go test -c -o "$tmp/b.test" "./$pkg")
cd "$root/$pkg"
read -r -a names <<<"$benches"
k=${#names[@]}
for r in $(seq 0 $((rounds - 1))); do
  for j in $(seq 0 $((k - 1))); do
    b=${names[$(((r + j) % k))]}
    pat="^$(sed 's#/#$/^#g' <<<"$b")\$"
    v=$("$tmp/b.test" -test.run '^$' -test.bench "$pat" -test.benchtime "$benchtime" |
      awk -v m="$metric" '/^Benchmark/ {for (i = 2; i < NF; i++) if ($(i+1) == m) {print $i; exit}}')
    [ -n "$v" ] || { echo "no $metric from $b" >&2; exit 1; }
    echo "$r $b $v"
  done
done | tee "$tmp/rounds"
echo "--- median ratio to ${names[0]} over $rounds rounds ($metric)"
awk -v first="${names[0]}" '{v[$1" "$2]=$3; rs[$1]=1; if ($2 != first) others[$2]=1}
  END {for (b in others) for (r in rs) if ((r" "b) in v && (r" "first) in v) print b, v[r" "b]/v[r" "first]}' "$tmp/rounds" |
  sort -k1,1 -k2,2g |
  awk '{q[$1]=q[$1]" "$2}
    END {for (n in q) {k=split(q[n], a, " "); m=(k%2)?a[(k+1)/2]:(a[k/2]+a[k/2+1])/2; printf "%-40s %.3f (rounds %.3f-%.3f)\n", n, m, a[1], a[k]}}'
sort -k2,2 -k3,3g "$tmp/rounds" |
  awk '{q[$2]=q[$2]" "$3}
    END {for (n in q) {k=split(q[n], a, " "); m=(k%2)?a[(k+1)/2]:(a[k/2]+a[k/2+1])/2; printf "%-40s median %s (range %s-%s)\n", n, m, a[1], a[k]}}'
