#include "proxy/process.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>

namespace kipvs::proxy {

bool lowerThreadPriority(int nice) {
    // On Linux the nice value belongs to the thread: PRIO_PROCESS with a thread id (gettid)
    // changes that thread only (setpriority(2), NOTES).
    const auto tid = static_cast<id_t>(gettid());
    errno = 0;
    const int now = getpriority(PRIO_PROCESS, tid);
    if (now == -1 && errno != 0) {
        return false;
    }
    return setpriority(PRIO_PROCESS, tid, now + nice) == 0;
}

int threadNice() {
    return getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
}

void limitHeapRetention() {
    mallopt(M_MMAP_THRESHOLD, 256 << 10);
    mallopt(M_TRIM_THRESHOLD, 1 << 20);
}

bool releaseFreeHeap() {
    return malloc_trim(0) != 0;
}

}  // namespace kipvs::proxy
