// Process-level resource hints for the daemon's threads and heap (issue 8).
#pragma once

#include <optional>

namespace kipvs::proxy {

// Lowers the calling thread's scheduling priority (its own nice value, not the process's) by
// `nice` steps. The verification reader calls it: at 44,000 Services reading the kernel
// state back takes longer than a syncPeriod, and at equal priority it took CPU from the io
// thread serving events. Returns false if the kernel refused; the thread then runs as it was.
bool lowerThreadPriority(int nice);

// The calling thread's nice value.
int threadNice();

// Fixes glibc's heap thresholds at start-up so that freed memory does not stay resident.
// By default they adapt: freeing a large block (a 44,000-Service list's buffers, a snapshot's
// vectors) raises the mmap threshold to its size and the trim threshold to twice that (up to
// 64 MiB), and a thread's heap then keeps that much free memory at its top, which malloc_trim
// does not release either (it trims only the main heap's top). At 44,000 Services x 10 the
// verification thread's heap kept 10-18 MiB resident with 8 KB in use. Blocks of 256 KiB and
// more are mapped and unmapped on their own; a heap's top is trimmed beyond 1 MiB.
void limitHeapRetention();

// Gives the heap's free pages back to the kernel (malloc_trim): after the initial lists and
// after each verification pass, whose snapshot of the whole IPVS table is freed at once.
// Returns true if any memory was released.
bool releaseFreeHeap();

// What Prometheus' standard process_* series report (client_golang's process collector,
// which kube-proxy's /metrics carries): read from /proc/self and getrlimit.
struct ProcessStats {
    double cpuSeconds = 0;  // user + system
    double residentBytes = 0;
    double virtualBytes = 0;
    double openFds = 0;
    double maxFds = 0;  // the soft RLIMIT_NOFILE
};
std::optional<ProcessStats> readProcessStats();

}  // namespace kipvs::proxy
