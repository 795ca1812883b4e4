// runProcess: what ExecIptables runs iptables-restore and iptables-save with. Exercised with
// /bin/sh, never with iptables, on the host.
#include <catch2/catch.hpp>

#include "tests/ipvs/host_test_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

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
