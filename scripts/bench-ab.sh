#!/usr/bin/env bash
# Compares benchmarks of one package at two revisions by CPU time, the two
# run in turns, so that the load of a shared machine falls on both alike
# and time spent waiting for a core is not counted:
#   scripts/bench-ab.sh OLD_REV NEW_REV PKG 'BenchA BenchB ...' [ROUNDS]
# NEW_REV may be "worktree" (the files as they are). Each benchmark runs
# alone in its process for a fixed number of iterations (about 1 s);
# CPU ns/op is the process's user+system time over the iterations. Prints
# each round and, per benchmark, the median of the rounds' new/old ratios
# (below 1: new is cheaper).
set -euo pipefail
old=$1 new=$2 pkg=$3 benches=$4 rounds=${5:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$(git rev-parse --show-toplevel)
build() { # rev name
  if [ "$1" = worktree ]; then
    (cd "$root" && go test -c -o "$tmp/$2.test" "./$pkg")
  else
    mkdir -p "$tmp/$2.src" && git -C "$root" archive "$1" | tar -x -C "$tmp/$2.src"
    (cd "$tmp/$2.src" && go test -c -o "$tmp/$2.test" "./$pkg")
  fi
}
build "$old" old
build "$new" new
cd "$root/$pkg"
cpu() { # binary bench iterations -> CPU seconds
  local me=$BASHPID t0 t1 # the shell that waits for the benchmark
  t0=$(awk '{print $16+$17}' "/proc/$me/stat")
  "$1" -test.run '^$' -test.bench "^$2\$" -test.benchtime "$3x" >/dev/null
  t1=$(awk '{print $16+$17}' "/proc/$me/stat")
  echo "$t0 $t1" | awk -v hz="$(getconf CLK_TCK)" '{print ($2-$1)/hz}'
}
for b in $benches; do
  ns=$("$tmp/old.test" -test.run '^$' -test.bench "^$b\$" -test.benchtime 0.2s | awk '/^Benchmark/ {print $3; exit}')
  n=$(awk -v ns="$ns" 'BEGIN {n=int(1e9/ns); print (n<10)?10:n}')
  for r in $(seq "$rounds"); do
    first=old second=new
    [ $((r % 2)) -eq 0 ] && first=new second=old
    for v in $first $second; do
      echo "$r $v $b $(cpu "$tmp/$v.test" "$b" "$n") $n"
    done
  done
done | awk '{printf "%s %s %s %.0f\n", $1, $2, $3, $4*1e9/$5}' | tee "$tmp/rounds"
echo "--- median new/old CPU ns/op over $rounds rounds"
awk '{t[$1" "$3" "$2]=$4; names[$3]=1; rs[$1]=1}
  END {for (n in names) for (r in rs) if ((r" "n" new") in t && (r" "n" old") in t) print n, t[r" "n" new"]/t[r" "n" old"]}' "$tmp/rounds" |
  sort -k1,1 -k2,2g |
  awk '{q[$1]=q[$1]" "$2}
    END {for (n in q) {k=split(q[n], a, " "); m=(k%2)?a[(k+1)/2]:(a[k/2]+a[k/2+1])/2; printf "%-32s %.3f (rounds %.3f-%.3f)\n", n, m, a[1], a[k]}}'
