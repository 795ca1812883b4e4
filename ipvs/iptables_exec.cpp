#include "ipvs/iptables_exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <tuple>

extern char** environ;

namespace kipvs::ipvs {

namespace {

// A pipe end that closes itself.
class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset(o.release());
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }
    int get() const { return fd_; }
    int release() {
        const int f = fd_;
        fd_ = -1;
        return f;
    }
    void reset(int f = -1) {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = f;
    }

  private:
    int fd_ = -1;
};

struct Pipe {
    Fd read;
    Fd write;
};

Result<Pipe> makePipe() {
    std::array<int, 2> fds{};
    if (::pipe2(fds.data(), O_CLOEXEC) < 0) {
        return Error::sys(errno, "pipe");
    }
    return Pipe{Fd(fds[0]), Fd(fds[1])};
}

struct FileActions {
    posix_spawn_file_actions_t fa{};
    FileActions() { posix_spawn_file_actions_init(&fa); }
    ~FileActions() { posix_spawn_file_actions_destroy(&fa); }
    FileActions(const FileActions&) = delete;
    FileActions& operator=(const FileActions&) = delete;
};

struct SpawnAttr {
    posix_spawnattr_t attr{};
    SpawnAttr() { posix_spawnattr_init(&attr); }
    ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
    SpawnAttr(const SpawnAttr&) = delete;
    SpawnAttr& operator=(const SpawnAttr&) = delete;
};

// Blocks SIGPIPE in this thread while we write to the child's stdin, so a child that exits
// before reading all of it gives us EPIPE instead of killing the daemon; a SIGPIPE raised
// meanwhile is consumed before the mask is restored.
class SigpipeGuard {
  public:
    SigpipeGuard() {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    }
    ~SigpipeGuard() {
        if (sigismember(&old_, SIGPIPE) == 0) {
            const timespec zero{};
            while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    SigpipeGuard(const SigpipeGuard&) = delete;
    SigpipeGuard& operator=(const SigpipeGuard&) = delete;

  private:
    sigset_t pipe_{};
    sigset_t old_{};
};

std::string joinArgs(const std::vector<std::string>& argv) {
    std::string s;
    for (const auto& a : argv) {
        if (!s.empty()) {
            s += ' ';
        }
        s += a;
    }
    return s;
}

// The tool's complaint, trimmed: iptables-restore prints the offending line and a usage hint.
std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
        s.pop_back();
    }
    constexpr std::size_t kMax = 2000;
    if (s.size() > kMax) {
        s.resize(kMax);
        s += "...";
    }
    return s;
}

int waitChild(pid_t pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return -1;
}

}  // namespace

Result<ProcessResult> runProcess(const std::vector<std::string>& argv, std::string_view input,
                                 std::chrono::milliseconds timeout) {
    const std::string what = joinArgs(argv);
    if (argv.empty()) {
        return Error::invalid("run: empty command");
    }
    auto in = makePipe();
    auto out = makePipe();
    auto err = makePipe();
    for (const auto* p : {&in, &out, &err}) {
        if (!*p) {
            return p->error().context(what);
        }
    }

    FileActions fa;
    // dup2 onto 0-2 clears close-on-exec on the copies; every other descriptor of ours is
    // close-on-exec, and closefrom covers anyone else's that is not.
    posix_spawn_file_actions_adddup2(&fa.fa, in->read.get(), 0);
    posix_spawn_file_actions_adddup2(&fa.fa, out->write.get(), 1);
    posix_spawn_file_actions_adddup2(&fa.fa, err->write.get(), 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&fa.fa, 3);
#endif
    SpawnAttr sa;
    sigset_t none;
    sigemptyset(&none);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2}) {
        sigaddset(&defaults, sig);
    }
    posix_spawnattr_setsigmask(&sa.attr, &none);
    posix_spawnattr_setsigdefault(&sa.attr, &defaults);
    posix_spawnattr_setflags(&sa.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);

    pid_t pid = -1;
    if (int rc = posix_spawnp(&pid, args[0], &fa.fa, &sa.attr, args.data(), environ); rc != 0) {
        return Error::sys(rc, what);
    }
    in->read.reset();
    out->write.reset();
    err->write.reset();
    for (int fd : {in->write.get(), out->read.get(), err->read.get()}) {
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }

    ProcessResult res;
    SigpipeGuard guard;
    std::size_t written = 0;
    if (input.empty()) {
        in->write.reset();
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::array<char, 16384> buf{};
    bool timedOut = false;
    while (out->read.get() >= 0 || err->read.get() >= 0) {
        std::array<pollfd, 3> fds{};
        nfds_t nfds = 0;
        const auto add = [&](const Fd& f, short events) {
            if (f.get() >= 0) {
                fds[nfds++] = pollfd{f.get(), events, 0};
            }
        };
        add(in->write, POLLOUT);
        add(out->read, POLLIN);
        add(err->read, POLLIN);
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timedOut = true;
            break;
        }
        const int pr = ::poll(fds.data(), nfds, static_cast<int>(left.count()));
        if (pr < 0 && errno != EINTR) {
            ::kill(pid, SIGKILL);
            waitChild(pid);
            return Error::sys(errno, what + ": poll");
        }
        for (nfds_t i = 0; i < nfds && pr > 0; ++i) {
            if (fds[i].revents == 0) {
                continue;
            }
            if (fds[i].fd == in->write.get()) {
                const ssize_t n =
                    ::write(fds[i].fd, input.data() + written, input.size() - written);
                if (n > 0) {
                    written += static_cast<std::size_t>(n);
                }
                // Done, or the child stopped reading (EPIPE): either way no more input.
                if (written == input.size() || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                    in->write.reset();
                }
                continue;
            }
            Fd& src = fds[i].fd == out->read.get() ? out->read : err->read;
            std::string& dst = fds[i].fd == out->read.get() ? res.out : res.err;
            const ssize_t n = ::read(fds[i].fd, buf.data(), buf.size());
            if (n > 0) {
                dst.append(buf.data(), static_cast<std::size_t>(n));
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                src.reset();
            }
        }
    }
    if (timedOut) {
        ::kill(pid, SIGKILL);
        waitChild(pid);
        return Error{std::error_code(ETIMEDOUT, std::generic_category()),
                     what + ": no exit within " + std::to_string(timeout.count()) + " ms" +
                         (res.err.empty() ? "" : ": " + trimmed(res.err))};
    }
    in->write.reset();
    res.exitStatus = waitChild(pid);
    if (res.exitStatus < 0) {
        return Error::sys(errno, what + ": waitpid");
    }
    return res;
}

namespace {

// runProcess, with a non-zero exit status as an error that carries the tool's stderr.
Result<ProcessResult> runSucceeding(const std::vector<std::string>& argv, std::string_view input,
                                    std::chrono::milliseconds timeout) {
    auto r = runProcess(argv, input, timeout);
    if (r && r->exitStatus != 0) {
        return Error{
            std::error_code(EIO, std::generic_category()),
            argv[0] + ": exit status " + std::to_string(r->exitStatus) + ": " + trimmed(r->err)};
    }
    return r;
}

}  // namespace

ExecIptablesConfig ExecIptablesConfig::forBackend(std::string_view backend) {
    const std::string b(backend);
    ExecIptablesConfig c;
    c.restore4 = "iptables-" + b + "-restore";
    c.restore6 = "ip6tables-" + b + "-restore";
    c.save4 = "iptables-" + b + "-save";
    c.save6 = "ip6tables-" + b + "-save";
    return c;
}

Result<void> ExecIptables::restore(net::Family f, const std::string& payload) {
    // -w: wait up to 5 s for the xtables lock held by another writer (legacy backend);
    // -W: poll it every 100 ms. --noflush: leave every chain the payload does not declare.
    // --counters: keep the counters the payload gives (the [0:0] of our chains).
    std::vector<std::string> argv{f == net::Family::V4 ? config_.restore4 : config_.restore6,
                                  "-w",
                                  "5",
                                  "-W",
                                  "100000",
                                  "--noflush",
                                  "--counters"};
    auto r = runSucceeding(argv, payload, config_.timeout);
    if (!r) {
        return r.error();
    }
    return ok();
}

Result<std::string> ExecIptables::version(net::Family f) {
    const std::vector<std::string> argv{f == net::Family::V4 ? config_.restore4 : config_.restore6,
                                        "--version"};
    auto r = runSucceeding(argv, "", config_.timeout);
    if (!r) {
        return r.error();
    }
    return std::move(r->out);
}

std::optional<bool> supportsRandomFully(std::string_view versionOutput) {
    // The first "v<major>.<minor>[.<patch>]".
    const char* end = versionOutput.data() + versionOutput.size();
    for (std::size_t at = versionOutput.find('v'); at != std::string_view::npos;
         at = versionOutput.find('v', at + 1)) {
        int major = 0;
        int minor = 0;
        int patch = 0;
        const auto r1 = std::from_chars(versionOutput.data() + at + 1, end, major);
        if (r1.ec != std::errc() || r1.ptr == end || *r1.ptr != '.') {
            continue;
        }
        const auto r2 = std::from_chars(r1.ptr + 1, end, minor);
        if (r2.ec != std::errc()) {
            continue;
        }
        if (r2.ptr != end && *r2.ptr == '.' &&
            std::from_chars(r2.ptr + 1, end, patch).ec != std::errc()) {
            patch = 0;
        }
        return std::tie(major, minor, patch) >= std::make_tuple(1, 6, 2);
    }
    return std::nullopt;
}

std::optional<std::string_view> saveSection(std::string_view save, std::string_view table) {
    const std::string head = "*" + std::string(table) + "\n";
    std::size_t at = 0;
    if (!save.starts_with(head)) {
        at = save.find("\n" + head);
        if (at == std::string_view::npos) {
            return std::nullopt;
        }
        ++at;
    }
    constexpr std::string_view kCommit = "\nCOMMIT\n";
    const auto end = save.find(kCommit, at);
    if (end == std::string_view::npos) {
        return std::nullopt;
    }
    return save.substr(at, end + kCommit.size() - at);
}

namespace {

// Runs an iptables-save; its output, or an error with its stderr.
Result<std::string> runSave(const std::vector<std::string>& argv,
                            std::chrono::milliseconds timeout) {
    auto r = runProcess(argv, {}, timeout);
    if (!r) {
        return r.error();
    }
    if (r->exitStatus != 0) {
        return Error{std::error_code(EIO, std::generic_category()),
                     joinArgs(argv) + ": exit status " + std::to_string(r->exitStatus) + ": " +
                         trimmed(r->err)};
    }
    return std::move(r->out);
}

}  // namespace

Result<std::string> ExecIptables::saveNatFilter(net::Family f) {
    auto all = runSave({f == net::Family::V4 ? config_.save4 : config_.save6}, config_.timeout);
    if (!all) {
        return all.error();
    }
    std::string out;
    for (const std::string_view table : {"nat", "filter"}) {
        if (auto part = saveSection(*all, table); part) {
            out += *part;
            continue;
        }
        auto alone = save(f, table);
        if (!alone) {
            return alone.error();
        }
        out += *alone;
    }
    return out;
}

Result<std::string> ExecIptables::save(net::Family f, std::string_view table) {
    return runSave({f == net::Family::V4 ? config_.save4 : config_.save6, "-t", std::string(table)},
                   config_.timeout);
}

}  // namespace kipvs::ipvs
