// Package bench is Pare's benchmark harness: it runs one workload against the
// vendor stub directly (the floor), a bare httputil.ReverseProxy, Pare itself
// and the usual "small proxy + OPA server" pattern, each in its own process,
// and reports throughput, latency added over the floor, CPU per request and
// peak memory, with ratios to the bare proxy measured in the same run.
//
// The command is cmd/bench; BENCHMARKS.md at the repository root documents
// what is measured and holds the latest results. Every server the harness
// starts listens on 127.0.0.1 only and is killed when the run ends.
package bench
