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
#include <vector>

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
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the fields are
    // counted from after the last ')', where field 3 (state) begins (proc(5)).
    const auto close = stat.rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream in(stat.substr(close + 1));
    const std::vector<std::string> fields{std::istream_iterator<std::string>(in),
                                          std::istream_iterator<std::string>()};
    const auto field = [&fields](std::size_t n) -> std::optional<double> {
        if (n - 3 >= fields.size()) {
            return std::nullopt;
        }
        try {
            return std::stod(fields[n - 3]);
        } catch (const std::exception&) {
            return std::nullopt;
        }
    };
    // utime and stime (fields 14 and 15) in clock ticks, vsize (23) in bytes, rss (24) in pages.
    const auto utime = field(14);
    const auto stime = field(15);
    const auto vsize = field(23);
    const auto rss = field(24);
    if (!utime || !stime || !vsize || !rss) {
        return std::nullopt;
    }
    ProcessStats s;
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    s.cpuSeconds = (*utime + *stime) / (ticks > 0 ? ticks : 100);
    s.virtualBytes = *vsize;
    s.residentBytes = *rss * static_cast<double>(sysconf(_SC_PAGESIZE));
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

}  // namespace kipvs::proxy
