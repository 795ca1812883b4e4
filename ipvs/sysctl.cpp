#include "ipvs/sysctl.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <string>

namespace kipvs::ipvs {

namespace {

// "net/ipv4/vs/conntrack", never ".." or an absolute path: the key is joined to the root.
bool validKey(std::string_view key) {
    if (key.empty() || key.front() == '/') {
        return false;
    }
    std::size_t i = 0;
    while (i <= key.size()) {
        const auto slash = key.find('/', i);
        const auto part = key.substr(i, slash == std::string_view::npos ? key.npos : slash - i);
        if (part.empty() || part == "." || part == "..") {
            return false;
        }
        if (slash == std::string_view::npos) {
            break;
        }
        i = slash + 1;
    }
    return true;
}

std::string_view trim(std::string_view s) {
    constexpr std::string_view kSpace = " \t\n\r";
    const auto b = s.find_first_not_of(kSpace);
    if (b == std::string_view::npos) {
        return {};
    }
    const auto e = s.find_last_not_of(kSpace);
    return s.substr(b, e - b + 1);
}

}  // namespace

Result<std::string> ProcSysctl::get(std::string_view key) {
    const std::string what = "read sysctl " + std::string(key);
    if (!validKey(key)) {
        return Error::invalid(what + ": invalid key");
    }
    const std::string path = root_ + "/" + std::string(key);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return Error::sys(errno, what);
    }
    std::string value;
    std::array<char, 4096> buf{};
    // A sysctl value is short; the bound keeps a wrong path (a device, a huge file) harmless.
    constexpr std::size_t kMax = 64 * 1024;
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            const int e = errno;
            ::close(fd);
            return Error::sys(e, what);
        }
        if (n == 0) {
            break;
        }
        value.append(buf.data(), static_cast<std::size_t>(n));
        if (value.size() > kMax) {
            ::close(fd);
            return Error::invalid(what + ": value longer than 64 KiB");
        }
    }
    ::close(fd);
    return std::string(trim(value));
}

Result<void> ProcSysctl::set(std::string_view key, std::string_view value) {
    const std::string what = "write sysctl " + std::string(key) + "=" + std::string(value);
    if (!validKey(key)) {
        return Error::invalid(what + ": invalid key");
    }
    const std::string path = root_ + "/" + std::string(key);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return Error::sys(errno, what);
    }
    // One write() of the whole value: /proc/sys parses each write separately.
    const std::string text = std::string(value) + "\n";
    ssize_t n = -1;
    do {
        n = ::write(fd, text.data(), text.size());
    } while (n < 0 && errno == EINTR);
    const int e = errno;
    if (::close(fd) < 0 && n >= 0) {
        return Error::sys(errno, what);
    }
    if (n < 0) {
        return Error::sys(e, what);
    }
    if (static_cast<std::size_t>(n) != text.size()) {
        return Error::sys(EIO, what + ": short write");
    }
    return ok();
}

Result<std::vector<std::string>> applySysctls(Sysctl& s, std::span<const SysctlSetting> settings) {
    std::vector<std::string> changed;
    for (const auto& setting : settings) {
        auto current = s.get(setting.key);
        if (!current) {
            return current.error().context("set sysctl " + setting.key + " to " + setting.value);
        }
        if (*current == setting.value) {
            continue;
        }
        if (auto r = s.set(setting.key, setting.value); !r) {
            return r.error().context("set sysctl " + setting.key + " to " + setting.value);
        }
        changed.push_back(setting.key);
    }
    return changed;
}

bool ipvsSchedulerLoaded(std::string_view sched, const std::string& sysModule) {
    const bool plain = !sched.empty() && std::all_of(sched.begin(), sched.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    });
    if (!plain) {
        return false;
    }
    const std::string dir = sysModule + "/ip_vs_" + std::string(sched);
    return access(dir.c_str(), F_OK) == 0;
}

}  // namespace kipvs::ipvs
