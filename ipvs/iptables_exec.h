// Iptables through the iptables-restore / iptables-save binaries (and the ip6tables ones).
//
// The binaries, not libiptc or nftables' library: they are the one interface that works the
// same whichever backend (nf_tables or legacy) the node's iptables uses, and they are what
// kube-proxy and every other component on the node use, so the xtables lock and rule
// encodings agree. Each run is a posix_spawn() with pipes for stdin, stdout and stderr, a time
// limit, and stderr kept for the error.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/iptables.h"

namespace kipvs::ipvs {

struct ExecIptablesConfig {
    // Looked up in PATH. "iptables-restore" is whatever backend the node chose through
    // update-alternatives; forNames("nft") / forNames("legacy") pick one explicitly.
    std::string restore4 = "iptables-restore";
    std::string restore6 = "ip6tables-restore";
    std::string save4 = "iptables-save";
    std::string save6 = "ip6tables-save";
    std::chrono::milliseconds timeout{60'000};

    // "iptables-<backend>-restore" and so on, e.g. backend "nft" or "legacy".
    static ExecIptablesConfig forBackend(std::string_view backend);
};

class ExecIptables final : public Iptables {
  public:
    explicit ExecIptables(ExecIptablesConfig config = {}) : config_(std::move(config)) {}

    // `<restore> -w 5 -W 100000 --noflush --counters` with the payload on stdin.
    Result<void> restore(net::Family f, const std::string& payload) override;
    // `<save> -t <table>`.
    Result<std::string> save(net::Family f, std::string_view table) override;
    // `<save>` of every table, of which the nat and filter parts are kept: one run instead of
    // two (starting the tool costs more than the dump). A table the output lacks (legacy
    // iptables lists only loaded tables) is saved on its own, which loads it.
    Result<std::string> saveNatFilter(net::Family f) override;
    // `<restore> --version`, e.g. "iptables-restore v1.8.9 (nf_tables)".
    Result<std::string> version(net::Family f);

  private:
    ExecIptablesConfig config_;
};

struct ProcessResult {
    int exitStatus = 0;  // WEXITSTATUS, or 128 + signal number
    std::string out;
    std::string err;
};

// Runs argv (argv[0] looked up in PATH) with `input` on its stdin and returns what it wrote.
// The child gets default signal dispositions and an empty signal mask, and no descriptor of
// ours beyond 0-2. On timeout it is killed and the error says so. Not an error: a non-zero exit.
// Whether the iptables whose `--version` printed `versionOutput` has MASQUERADE's
// --random-fully (1.6.2 and later), or nullopt when the output holds no version.
std::optional<bool> supportsRandomFully(std::string_view versionOutput);

// The "*table" ... "COMMIT" section of `table` in iptables-save output, or nullopt.
std::optional<std::string_view> saveSection(std::string_view save, std::string_view table);

Result<ProcessResult> runProcess(const std::vector<std::string>& argv, std::string_view input,
                                 std::chrono::milliseconds timeout);

}  // namespace kipvs::ipvs
