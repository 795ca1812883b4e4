// runProcess: what ExecIptables runs iptables-restore and iptables-save with. Exercised with
// /bin/sh, never with iptables, on the host.
#include <catch2/catch.hpp>

#include "tests/ipvs/host_test_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "ipvs/iptables_exec.h"

using namespace kipvs::ipvs;
using namespace std::chrono_literals;

TEST_CASE("runProcess feeds stdin and collects stdout, stderr and the exit status", "[exec]") {
    auto r =
        runProcess({"/bin/sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"}, "*nat\nCOMMIT\n", 10s);
    REQUIRE(kipvs::test::succeeded(r));
    CHECK(r->exitStatus == 3);
    CHECK(r->out == "*NAT\nCOMMIT\n");
    CHECK(r->err == "oops\n");
}

TEST_CASE("runProcess moves more than a pipe buffer both ways", "[exec]") {
    // 1 MiB in and out: a child that writes while we still write must not deadlock us.
    std::string big(1 << 20, 'x');
    auto r = runProcess({"/bin/cat"}, big, 30s);
    REQUIRE(kipvs::test::succeeded(r));
    CHECK(r->exitStatus == 0);
    CHECK(r->out.size() == big.size());
}

TEST_CASE("runProcess survives a child that does not read its input", "[exec]") {
    // The child exits at once; writing the rest of stdin gets EPIPE, not a SIGPIPE that would
    // kill the test process.
    std::string big(4 << 20, 'x');
    auto r = runProcess({"/bin/sh", "-c", "exit 0"}, big, 10s);
    REQUIRE(kipvs::test::succeeded(r));
    CHECK(r->exitStatus == 0);
}

TEST_CASE("runProcess kills a child that runs past the time limit", "[exec]") {
    const auto start = std::chrono::steady_clock::now();
    auto r = runProcess({"/bin/sh", "-c", "echo started >&2; exec sleep 30"}, "", 300ms);
    REQUIRE(kipvs::test::failed(r));
    CHECK(r.error().code == std::errc::timed_out);
    CHECK(r.error().message.find("/bin/sh -c") == 0);
    CHECK(r.error().message.find("started") != std::string::npos);
    // Killed, not waited for: well under the child's 30 s (a generous bound, not a timing).
    CHECK(std::chrono::steady_clock::now() - start < 20s);
}

TEST_CASE("runProcess reports a missing binary", "[exec]") {
    auto r = runProcess({"kube-ipvs-no-such-binary"}, "", 5s);
    REQUIRE(kipvs::test::failed(r));
    CHECK(r.error().code == std::errc::no_such_file_or_directory);
    CHECK(r.error().message.find("kube-ipvs-no-such-binary") == 0);
}

TEST_CASE("runProcess passes no descriptor of ours to the child", "[exec]") {
    // A descriptor without close-on-exec, as a careless library might leave one, at a number
    // nothing else uses (ls itself opens the lowest free one).
    const int opened = ::open("/dev/null", O_RDONLY);
    REQUIRE(opened >= 0);
    const int leaked = ::dup2(opened, 123);
    ::close(opened);
    REQUIRE(leaked == 123);
    auto r = runProcess({"/bin/sh", "-c", "ls /proc/self/fd"}, "", 10s);
    ::close(leaked);
    REQUIRE(kipvs::test::succeeded(r));
    // 0, 1, 2 and the descriptor ls opens to read the folder; nothing else.
    CHECK(r->out.find(std::to_string(leaked) + "\n") == std::string::npos);
}

TEST_CASE("ExecIptables reports the tool's stderr and exit status", "[exec]") {
    ExecIptablesConfig cfg;
    cfg.restore4 = "/bin/false";
    cfg.save4 = "/bin/echo";
    ExecIptables ipt(cfg);
    auto r = ipt.restore(kipvs::net::Family::V4, "*nat\nCOMMIT\n");
    REQUIRE(kipvs::test::failed(r));
    CHECK(r.error().message == "/bin/false: exit status 1: ");
    auto s = ipt.save(kipvs::net::Family::V4, "nat");
    REQUIRE(kipvs::test::succeeded(s));
    CHECK(*s == "-t nat\n");
    CHECK(ExecIptablesConfig::forBackend("legacy").restore6 == "ip6tables-legacy-restore");
    CHECK(ExecIptablesConfig::forBackend("nft").save4 == "iptables-nft-save");
}

namespace {

// An executable shell script in a fresh temporary directory; removed with the directory.
struct Script {
    std::string dir;
    std::string path;
    explicit Script(const std::string& body) {
        char tmpl[] = "/tmp/kube-ipvs-exec-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        path = dir + "/save";
        std::FILE* f = std::fopen(path.c_str(), "w");
        REQUIRE(f != nullptr);
        std::fputs(("#!/bin/sh\n" + body).c_str(), f);
        std::fclose(f);
        REQUIRE(::chmod(path.c_str(), 0755) == 0);
    }
    ~Script() {
        ::unlink(path.c_str());
        ::unlink((dir + "/calls").c_str());
        ::rmdir(dir.c_str());
    }
    // ExecIptables::saveNatFilter with this script as iptables-save.
    kipvs::Result<std::string> saveNatFilter() const {
        ExecIptablesConfig cfg;
        cfg.save4 = path;
        return ExecIptables(cfg).saveNatFilter(kipvs::net::Family::V4);
    }
    std::string calls() const {
        std::string out;
        if (std::FILE* f = std::fopen((dir + "/calls").c_str(), "r")) {
            char buf[256];
            while (std::fgets(buf, sizeof buf, f) != nullptr) {
                out += buf;
            }
            std::fclose(f);
        }
        return out;
    }
};

}  // namespace

TEST_CASE("saveNatFilter keeps the nat and filter sections of one iptables-save run", "[exec]") {
    // As iptables-save prints every table: comments, other tables around ours.
    Script save(R"(echo "args:$*" >> "$(dirname "$0")/calls"
cat <<'OUT'
# Generated by iptables-save v1.8.9 (nf_tables)
*raw
:PREROUTING ACCEPT [0:0]
COMMIT
# Completed
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:KUBE-IPVS-FILTER - [0:0]
-A INPUT -j KUBE-IPVS-FILTER
COMMIT
# Completed
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -m comment --comment "COMMIT" -j KUBE-POSTROUTING
COMMIT
*mangle
COMMIT
OUT
)");
    auto s = save.saveNatFilter();
    REQUIRE(kipvs::test::succeeded(s));
    CHECK(*s ==
          "*nat\n:POSTROUTING ACCEPT [0:0]\n"
          "-A POSTROUTING -m comment --comment \"COMMIT\" -j KUBE-POSTROUTING\nCOMMIT\n"
          "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-IPVS-FILTER - [0:0]\n"
          "-A INPUT -j KUBE-IPVS-FILTER\nCOMMIT\n");
    CHECK(save.calls() == "args:\n");  // one run, for every table
}

TEST_CASE("saveNatFilter saves a table the full listing lacks on its own", "[exec]") {
    // Legacy iptables-save lists loaded tables only; `-t nat` loads the table.
    Script save(R"(echo "args:$*" >> "$(dirname "$0")/calls"
if [ "$1" = "-t" ]; then printf '*%s\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' "$2"; exit 0; fi
printf '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n'
)");
    auto s = save.saveNatFilter();
    REQUIRE(kipvs::test::succeeded(s));
    CHECK(*s == "*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
    CHECK(save.calls() == "args:\nargs:-t nat\n");
}

TEST_CASE("saveNatFilter reports a failing iptables-save with its stderr", "[exec]") {
    Script save("echo 'iptables-save: lock busy' >&2; exit 4\n");
    auto s = save.saveNatFilter();
    REQUIRE(kipvs::test::failed(s));
    CHECK(s.error().message == save.path + ": exit status 4: iptables-save: lock busy");
}

TEST_CASE("saveSection finds a table's section only at a line start", "[exec]") {
    CHECK(saveSection("*nat\nCOMMIT\n", "nat") ==
          std::optional<std::string_view>("*nat\nCOMMIT\n"));
    CHECK_FALSE(saveSection("-A X -m comment --comment *nat\n", "nat").has_value());
    CHECK_FALSE(saveSection("*nat\n-A X\n", "nat").has_value());  // cut off: no COMMIT
    CHECK_FALSE(saveSection("*natural\nCOMMIT\n", "nat").has_value());
}

TEST_CASE("--random-fully is used from iptables 1.6.2 on, as kube-proxy checks", "[exec]") {
    CHECK(supportsRandomFully("iptables-restore v1.8.9 (nf_tables)\n") == true);
    CHECK(supportsRandomFully("iptables-restore v1.6.2\n") == true);
    CHECK(supportsRandomFully("ip6tables-restore v1.10.0 (legacy)\n") == true);
    CHECK(supportsRandomFully("iptables-restore v1.6.1\n") == false);
    CHECK(supportsRandomFully("iptables-restore v1.4.21\n") == false);
    CHECK(supportsRandomFully("iptables v1.6\n") == false);
    CHECK_FALSE(supportsRandomFully("no version here").has_value());
    CHECK_FALSE(supportsRandomFully("").has_value());
}

TEST_CASE("ExecIptables reads the version of the binary it runs", "[exec]") {
    const Script tool("echo \"fake-restore v1.6.1 ($1)\"\n");
    ExecIptablesConfig cfg;
    cfg.restore4 = tool.path;
    auto v = ExecIptables(cfg).version(kipvs::net::Family::V4);
    REQUIRE(kipvs::test::succeeded(v));
    CHECK(*v == "fake-restore v1.6.1 (--version)\n");
    CHECK(supportsRandomFully(*v) == false);
}
