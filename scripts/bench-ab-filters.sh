#!/usr/bin/env bash
# A/B of package filters at two revisions inside one process: the old
# revision's filters is copied in as package filtersold, and a driver runs
# old and new in turns of a few milliseconds each, many times, timing each
# turn by the thread's CPU time. On a shared machine the two then see the
# same load, cache and clock; the median of the turns' new/old ratios is
# the figure.
#   scripts/bench-ab-filters.sh OLD_REV [ROUNDS]
# Compares the current files (committed or not) with OLD_REV on
# checkout.json: the JSON mask without the card guard, with it on a few
# fields, and with it on nearly the whole document.
set -euo pipefail
old=$1 rounds=${2:-400}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/go.mod" "$root/go.sum" "$root/filters" "$tmp/"
mkdir -p "$tmp/filtersold" "$tmp/abdriver"
git -C "$root" archive "$old" filters | tar -x -C "$tmp/filtersold" --strip-components=1
rm -f "$tmp"/filtersold/*_test.go
sed -i 's/^package filters$/package filtersold/' "$tmp"/filtersold/*.go
module=$(awk '/^module/ {print $2}' "$tmp/go.mod")
cat > "$tmp/abdriver/main.go" <<GO
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"$module/filters"
	"$module/filtersold"
)

// threadCPU is CLOCK_THREAD_CPUTIME_ID: to the nanosecond, where
// getrusage is sampled at clock ticks.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

func main() {
	runtime.LockOSThread()
	rounds, _ := strconv.Atoi(os.Args[2])
	doc, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	cases := []struct {
		name   string
		fields []string
		guard  int
	}{
		{"mask, guard off (cards: allow)", []string{"amount", "currency", "description", "order_id", "card", "billing_address/postal_code", "billing_address/country", "items/0/sku", "items/1/sku", "metadata/order_channel", "idempotency_key"}, 2},
		{"mask of 5 fields, guard on", []string{"amount", "currency", "order_id", "items/*/sku", "customer/notes"}, 0},
		{"mask of all but card, guard on", []string{"order_id", "created_at", "amount", "currency", "description", "plan", "customer", "billing_address", "items", "attendee_count_last_90d", "webinars", "device", "session", "metadata", "idempotency_key"}, 0},
	}
	for _, c := range cases {
		mn, err := filters.Compile(c.fields, nil)
		if err != nil {
			panic(err)
		}
		mo, err := filtersold.Compile(c.fields, nil)
		if err != nil {
			panic(err)
		}
		on := &filters.Options{Cards: filters.CardGuard(c.guard)}
		oo := &filtersold.Options{Cards: filtersold.CardGuard(c.guard)}
		dst := make([]byte, 0, 2*len(doc))
		runNew := func(n int) {
			for range n {
				if dst, _, err = mn.JSON(dst[:0], doc, on); err != nil {
					panic(err)
				}
			}
		}
		runOld := func(n int) {
			for range n {
				if dst, _, err = mo.JSON(dst[:0], doc, oo); err != nil {
					panic(err)
				}
			}
		}
		// A turn of about 5 ms.
		t := threadCPU()
		runOld(100)
		n := max(10, int(5*time.Millisecond/max(1, (threadCPU()-t)/100)))
		fmt.Fprintln(os.Stderr, c.name, "ops per turn", n)
		var ratios, olds, news []float64
		for r := range rounds {
			var to, tn time.Duration
			for k := range 2 {
				if (r+k)%2 == 0 {
					t := threadCPU()
					runOld(n)
					to = threadCPU() - t
				} else {
					t := threadCPU()
					runNew(n)
					tn = threadCPU() - t
				}
			}
			if to > 0 && tn > 0 {
				ratios = append(ratios, float64(tn)/float64(to))
				olds = append(olds, float64(to)/float64(n))
				news = append(news, float64(tn)/float64(n))
			}
		}
		med := func(x []float64) float64 { sort.Float64s(x); return x[len(x)/2] }
		q := func(x []float64, p float64) float64 { return x[int(p*float64(len(x)-1))] }
		m := med(ratios)
		fmt.Printf("%-32s new/old CPU %.3f (quartiles %.3f-%.3f, %d turns of %d ops)  old %.0f ns/op  new %.0f ns/op\n",
			c.name, m, q(ratios, 0.25), q(ratios, 0.75), len(ratios), n, med(olds), med(news))
	}
}
GO
(cd "$tmp" && go build -o abdriver.bin ./abdriver) || exit 1
echo "built; running $rounds rounds per case" >&2
"$tmp/abdriver.bin" "$root/filters/testdata/checkout.json" "$rounds"
