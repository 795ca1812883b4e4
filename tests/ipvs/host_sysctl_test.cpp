// applySysctls over a ProcSysctl rooted in a temporary folder, and its error messages.
#include <catch2/catch.hpp>

#include "tests/ipvs/host_test_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "ipvs/sysctl.h"

using namespace kipvs;
using namespace kipvs::ipvs;
namespace fs = std::filesystem;

namespace {

class TempDir {
  public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "kipvs-sysctl-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() { fs::remove_all(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const fs::path& path() const { return path_; }

    void write(const std::string& key, const std::string& content) {
        fs::create_directories((path_ / key).parent_path());
        std::ofstream(path_ / key) << content;
    }
    std::string read(const std::string& key) {
        std::ifstream in(path_ / key);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
    // Moves the file's modification time to the past, so that any write shows.
    void age(const std::string& key) {
        const auto old = fs::file_time_type::clock::now() - std::chrono::hours(24);
        fs::last_write_time(path_ / key, old);
    }
    bool touchedSinceAged(const std::string& key) {
        return fs::last_write_time(path_ / key) >
               fs::file_time_type::clock::now() - std::chrono::hours(1);
    }

  private:
    fs::path path_;
};

}  // namespace

TEST_CASE("applySysctls writes only what differs and reports it", "[sysctl]") {
    TempDir dir;
    // As /proc/sys prints them: a trailing newline.
    dir.write("net/ipv4/vs/conntrack", "0\n");
    dir.write("net/ipv4/vs/expire_nodest_conn", "1\n");
    dir.write("net/ipv4/ip_forward", "0\n");
    dir.age("net/ipv4/vs/expire_nodest_conn");
    ProcSysctl sys(dir.path().string());

    const std::vector<SysctlSetting> settings{{"net/ipv4/vs/conntrack", "1"},
                                              {"net/ipv4/vs/expire_nodest_conn", "1"},
                                              {"net/ipv4/ip_forward", "1"}};
    auto changed = applySysctls(sys, settings);
    REQUIRE(kipvs::test::succeeded(changed));
    CHECK(*changed == std::vector<std::string>{"net/ipv4/vs/conntrack", "net/ipv4/ip_forward"});
    CHECK(dir.read("net/ipv4/vs/conntrack") == "1\n");
    CHECK(dir.read("net/ipv4/ip_forward") == "1\n");
    CHECK_FALSE(dir.touchedSinceAged("net/ipv4/vs/expire_nodest_conn"));

    // Everything in place: nothing written, nothing reported.
    dir.age("net/ipv4/vs/conntrack");
    auto again = applySysctls(sys, settings);
    REQUIRE(kipvs::test::succeeded(again));
    CHECK(again->empty());
    CHECK_FALSE(dir.touchedSinceAged("net/ipv4/vs/conntrack"));
}

TEST_CASE("ProcSysctl trims values and refuses keys that leave its root", "[sysctl]") {
    TempDir dir;
    dir.write("net/ipv4/tcp_rmem", "4096\t131072\t6291456\n");
    ProcSysctl sys(dir.path().string());
    auto v = sys.get("net/ipv4/tcp_rmem");
    REQUIRE(kipvs::test::succeeded(v));
    CHECK(*v == "4096\t131072\t6291456");
    for (const char* bad : {"", "/etc/passwd", "net/../../etc/passwd", "net//ipv4", "net/ipv4/"}) {
        INFO(bad);
        CHECK(kipvs::test::failed(sys.get(bad)));
        CHECK(kipvs::test::failed(sys.set(bad, "1")));
    }
}

TEST_CASE("applySysctls stops at the first failure and names the key", "[sysctl]") {
    TempDir dir;
    dir.write("net/ipv4/vs/conntrack", "0\n");
    ProcSysctl sys(dir.path().string());
    // The IPVS sysctls are missing when ip_vs is not loaded.
    const std::vector<SysctlSetting> settings{{"net/ipv4/vs/expire_nodest_conn", "1"},
                                              {"net/ipv4/vs/conntrack", "1"}};
    auto r = applySysctls(sys, settings);
    REQUIRE(kipvs::test::failed(r));
    CHECK(r.error().code == std::errc::no_such_file_or_directory);
    CHECK(r.error().message.find("net/ipv4/vs/expire_nodest_conn") != std::string::npos);
    CHECK(r.error().message.find("No such file or directory") != std::string::npos);
    // It stopped there: the second setting was not applied.
    CHECK(dir.read("net/ipv4/vs/conntrack") == "0\n");
}

namespace {

// A Sysctl whose writes fail, as /proc/sys does for a read-only /proc in a container.
class ReadOnlySysctl final : public Sysctl {
  public:
    std::map<std::string, std::string, std::less<>> values;
    Result<std::string> get(std::string_view key) override {
        auto it = values.find(key);
        if (it == values.end()) {
            return Error::sys(ENOENT, "read");
        }
        return it->second;
    }
    Result<void> set(std::string_view /*key*/, std::string_view /*value*/) override {
        return Error::sys(EROFS, "write");
    }
};

}  // namespace

TEST_CASE("a failed write names the key and the value", "[sysctl]") {
    ReadOnlySysctl sys;
    sys.values["net/ipv4/ip_forward"] = "0";
    const std::vector<SysctlSetting> settings{{"net/ipv4/ip_forward", "1"}};
    auto r = applySysctls(sys, settings);
    REQUIRE(kipvs::test::failed(r));
    CHECK(r.error().code == std::errc::read_only_file_system);
    CHECK(r.error().message.find("net/ipv4/ip_forward") != std::string::npos);
    CHECK(r.error().message.find("to 1") != std::string::npos);

    // Unchanged values are never written, so a read-only /proc/sys that already holds them is
    // no error.
    sys.values["net/ipv4/ip_forward"] = "1";
    auto fine = applySysctls(sys, settings);
    REQUIRE(kipvs::test::succeeded(fine));
    CHECK(fine->empty());
}

TEST_CASE("ProcSysctl write errors name the key and the value", "[sysctl]") {
    TempDir dir;
    ProcSysctl sys(dir.path().string());
    auto r = sys.set("net/ipv4/vs/conntrack", "1");
    REQUIRE(kipvs::test::failed(r));
    CHECK(r.error().message.find("net/ipv4/vs/conntrack=1") != std::string::npos);
}

TEST_CASE("a scheduler counts as loaded when its module is in /sys/module", "[sysctl]") {
    TempDir t;
    t.write("ip_vs_rr/refcnt", "3\n");
    t.write("ip_vs/refcnt", "5\n");
    const std::string root = t.path().string();
    CHECK(ipvsSchedulerLoaded("rr", root));
    CHECK_FALSE(ipvsSchedulerLoaded("wrr", root));  // built in, or not loaded: probe it
    // Only plain module names are joined to the folder.
    t.write("ip_vs_rr/x/refcnt", "1\n");
    CHECK_FALSE(ipvsSchedulerLoaded("", root));
    CHECK_FALSE(ipvsSchedulerLoaded("rr/x", root));
    CHECK_FALSE(ipvsSchedulerLoaded("../ip_vs_rr", root));
    CHECK_FALSE(ipvsSchedulerLoaded("rr", root + "/missing"));
}
