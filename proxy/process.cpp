#include "proxy/process.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <dirent.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

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

std::optional<ProcessStats> readProcessStats() {
    std::ifstream f("/proc/self/stat");
    const std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields count from
    // after the last ')'. utime and stime are fields 14 and 15, vsize 23, rss 24 (proc(5)).
    const auto close = stat.rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream in(stat.substr(close + 1));
    std::string field;
    ProcessStats s;
    double utime = 0;
    double stime = 0;
    double rssPages = 0;
    for (int i = 3; i <= 24 && (in >> field); ++i) {
        if (i == 14 || i == 15 || i == 23 || i == 24) {
            double v = 0;
            try {
                v = std::stod(field);
            } catch (const std::exception&) {
                return std::nullopt;
            }
            (i == 14 ? utime : i == 15 ? stime : i == 23 ? s.virtualBytes : rssPages) = v;
        }
        if (i == 24) {
            const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
            s.cpuSeconds = (utime + stime) / (ticks > 0 ? ticks : 100);
            s.residentBytes = rssPages * static_cast<double>(sysconf(_SC_PAGESIZE));
            if (DIR* d = opendir("/proc/self/fd")) {
                int n = 0;
                while (const dirent* e = readdir(d)) {
                    n += e->d_name[0] != '.' ? 1 : 0;
                }
                closedir(d);
                s.openFds = n - 1;  // not the directory's own descriptor
            }
            rlimit lim{};
            if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
                s.maxFds = static_cast<double>(lim.rlim_cur);
            }
            return s;
        }
    }
    return std::nullopt;
}

}  // namespace kipvs::proxy
