// Replays every seed (tests/fuzz/corpus/<target>/) and every reproducer
// (tests/fuzz/regressions/<target>/) through the fuzz targets' own entry points, built with the
// normal compiler: the invariants of each target hold and nothing crashes (CI also runs this
// binary under ASan+UBSan). Each reproducer also has a test case of its own below that states
// the expected result of the input that once broke the parser.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ipvs/ipvs_codec.h"
#include "tests/fuzz/fuzz.h"

namespace fs = std::filesystem;
using kipvs::fuzz::InvariantFailure;

namespace {

using Target = int (*)(const std::uint8_t*, std::size_t);

std::string readAll(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<fs::path> inputs(const std::string& target) {
    std::vector<fs::path> out;
    for (const char* dir : {"corpus", "regressions"}) {
        const fs::path d = fs::path(KIPVS_FUZZ_DIR) / dir / target;
        if (!fs::is_directory(d)) {
            continue;
        }
        for (const auto& e : fs::directory_iterator(d)) {
            if (e.is_regular_file()) {
                out.push_back(e.path());
            }
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

// Runs every input of `target`; returns how many there were.
std::size_t replay(const std::string& target, Target fn) {
    const auto files = inputs(target);
    for (const auto& f : files) {
        const std::string data = readAll(f);
        INFO(f.string());
        try {
            fn(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
        } catch (const InvariantFailure& e) {
            FAIL_CHECK(e.what());
        }
    }
    return files.size();
}

}  // namespace

TEST_CASE("replay: fuzz_watch_stream seeds and reproducers", "[fuzz]") {
    CHECK(replay("fuzz_watch_stream", kipvs::fuzz::watchStream) > 0);
}

TEST_CASE("replay: fuzz_objects seeds and reproducers", "[fuzz]") {
    CHECK(replay("fuzz_objects", kipvs::fuzz::objects) > 0);
}

TEST_CASE("replay: fuzz_kubeconfig seeds and reproducers", "[fuzz]") {
    CHECK(replay("fuzz_kubeconfig", kipvs::fuzz::kubeconfig) > 0);
}

TEST_CASE("replay: fuzz_proxy_config seeds and reproducers", "[fuzz]") {
    CHECK(replay("fuzz_proxy_config", kipvs::fuzz::proxyConfig) > 0);
}

TEST_CASE("replay: fuzz_ipvs_netlink seeds and reproducers", "[fuzz]") {
    CHECK(replay("fuzz_ipvs_netlink", kipvs::fuzz::ipvsNetlink) > 0);
}

// ---- Reproducers -----------------------------------------------------------------------------

namespace {

std::string reproducer(const std::string& target, const std::string& name) {
    const fs::path p = fs::path(KIPVS_FUZZ_DIR) / "regressions" / target / name;
    REQUIRE(fs::is_regular_file(p));
    return readAll(p);
}

// The reply part of a netlink reproducer (after the target's two option bytes).
kipvs::ipvs::codec::ByteSpan reply(const std::string& input) {
    REQUIRE(input.size() >= 2);
    return {reinterpret_cast<const std::uint8_t*>(input.data()) + 2, input.size() - 2};
}

}  // namespace

TEST_CASE("regression: an ack or NLMSG_DONE with error INT_MIN is malformed, not UB",
          "[fuzz][regression]") {
    // Found by fuzz_ipvs_netlink: `-err` of INT_MIN overflowed (UBSan) in decodeAck and
    // decodeDone; the kernel sends a negated errno, and INT_MIN is none.
    const auto done = reproducer("fuzz_ipvs_netlink", "done-int-min");
    auto d = kipvs::ipvs::codec::decodeDone(reply(done));
    REQUIRE_FALSE(d.has_value());
    CHECK(d.error().code == std::errc::protocol_error);
    const auto ack = reproducer("fuzz_ipvs_netlink", "ack-int-min");
    auto a = kipvs::ipvs::codec::decodeAck(reply(ack));
    REQUIRE_FALSE(a.has_value());
    CHECK(a.error().message.find("error code -2147483648") != std::string::npos);
    // A datagram carrying it stops at that message instead.
    const auto dg = reproducer("fuzz_ipvs_netlink", "datagram-done-int-min");
    CHECK_NOTHROW(
        kipvs::fuzz::ipvsNetlink(reinterpret_cast<const std::uint8_t*>(dg.data()), dg.size()));
}

TEST_CASE("regression: a watch line over the limit that arrives in one read fails the stream",
          "[fuzz][regression]") {
    // Found by fuzz_watch_stream: LineFramer only checked lines that were still arriving, so a
    // longer one delivered whole was handed out. The target's model now expects next() to fail
    // there; the replay below would throw InvariantFailure with the old framer.
    const auto input = reproducer("fuzz_watch_stream", "line-over-limit-in-one-read");
    CHECK_NOTHROW(kipvs::fuzz::watchStream(reinterpret_cast<const std::uint8_t*>(input.data()),
                                           input.size()));
}

TEST_CASE("regression: a trigger time in the year 4048 is invalid, not an overflow",
          "[fuzz][regression]") {
    // Found by fuzz_objects under UBSan: seconds * 10^9 overflowed int64 in parseRfc3339Nanos.
    const auto input = reproducer("fuzz_objects", "trigger-time-year-overflow");
    CHECK(input.find("4048-05-01T10:00:05.123456789Z") != std::string::npos);
    CHECK_NOTHROW(
        kipvs::fuzz::objects(reinterpret_cast<const std::uint8_t*>(input.data()), input.size()));
}

TEST_CASE("regression: a list parser reset after a response cut inside a scalar starts clean",
          "[fuzz][regression]") {
    // Found by fuzz_objects: Handler::reset() kept pendingScalar_ and capturingItem_, so after
    // a truncated response the next one's "kind" was delivered as an item (7 items chunked, 6
    // whole). The replay below compares the two and throws InvariantFailure on a difference.
    const auto input = reproducer("fuzz_objects", "list-reset-after-cut-scalar");
    CHECK_NOTHROW(
        kipvs::fuzz::objects(reinterpret_cast<const std::uint8_t*>(input.data()), input.size()));
}

TEST_CASE("regression: /configz stays JSON with a non-UTF-8 byte in the config",
          "[fuzz][regression]") {
    // Found by fuzz_proxy_config: a 0xe0 byte in clientConnection.kubeconfig reached /configz
    // unchanged and Boost.JSON refused the body. The replay checks that it parses now.
    const auto input = reproducer("fuzz_proxy_config", "configz-invalid-utf8");
    CHECK(input.find("ku\xe0"
                     "becnfig") != std::string::npos);
    CHECK_NOTHROW(kipvs::fuzz::proxyConfig(reinterpret_cast<const std::uint8_t*>(input.data()),
                                           input.size()));
}

TEST_CASE("fuzz_proxy_config: an address cut short by a NUL is not an address",
          "[fuzz][regression]") {
    // Found by fuzz_proxy_config: bindAddress "::" followed by a NUL and more bytes passed
    // validation (inet_pton stops at the NUL) but the written file did not read back as valid.
    // IpAddress::parse now refuses a NUL anywhere, so validation rejects the file at once.
    const auto input = reproducer("fuzz_proxy_config", "bind-address-nul");
    CHECK(input.find(std::string("bindAddress: \"::\0", 17)) != std::string::npos);
    CHECK_NOTHROW(kipvs::fuzz::proxyConfig(reinterpret_cast<const std::uint8_t*>(input.data()),
                                           input.size()));
}

TEST_CASE("fuzz_proxy_config: a hostnameOverride of a lone carriage return reads back",
          "[fuzz][regression]") {
    // Found by fuzz_proxy_config in CI: yaml-cpp wrote the string "\r" as a plain scalar, which
    // a reader takes as a line break, so the written file read back with an empty
    // hostnameOverride and wrote different text. toYaml double-quotes such text now.
    const auto input = reproducer("fuzz_proxy_config", "hostname-lone-cr");
    CHECK(input.find("hostnameOverride: \"\\r\"") != std::string::npos);
    CHECK_NOTHROW(kipvs::fuzz::proxyConfig(reinterpret_cast<const std::uint8_t*>(input.data()),
                                           input.size()));
}
