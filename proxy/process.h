// Process-level resource hints for the daemon's threads and heap (issue 8).
#pragma once

namespace kipvs::proxy {

// Lowers the calling thread's scheduling priority (its own nice value, not the process's) by
// `nice` steps. The verification reader calls it: at 44,000 Services reading the kernel
// state back takes longer than a syncPeriod, and at equal priority it took CPU from the io
// thread serving events. Returns false if the kernel refused; the thread then runs as it was.
bool lowerThreadPriority(int nice);

// The calling thread's nice value.
int threadNice();

// Gives the heap's free pages back to the kernel (malloc_trim): after the initial lists and
// after each verification pass, whose snapshot of the whole IPVS table is freed at once.
// Returns true if any memory was released.
bool releaseFreeHeap();

}  // namespace kipvs::proxy
