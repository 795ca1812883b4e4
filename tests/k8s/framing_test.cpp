#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "k8s-client/framing.h"

using kipvs::k8s::LineFramer;

namespace {

std::vector<std::string> drain(LineFramer& f) {
    std::vector<std::string> out;
    std::string line;
    while (f.next(line)) {
        out.push_back(line);
    }
    return out;
}

}  // namespace

TEST_CASE("LineFramer splits lines regardless of chunk boundaries", "[framing]") {
    const std::vector<std::string> events = {
        R"({"type":"ADDED","object":{"kind":"Service","metadata":{"name":"a"}}})",
        R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"12"}}})",
        std::string(100000, 'x'),
        R"({"type":"DELETED","object":{}})",
    };
    std::string body;
    for (const auto& e : events) {
        body += e;
        body += '\n';
    }

    std::mt19937 rng(20261124);
    for (int round = 0; round < 500; ++round) {
        LineFramer f;
        std::vector<std::string> got;
        std::size_t pos = 0;
        while (pos < body.size()) {
            // Chunks from 1 byte to a few kB, as a chunked HTTP body may deliver them.
            std::uniform_int_distribution<std::size_t> len(1, round % 2 ? 7 : 4096);
            const std::size_t n = std::min(len(rng), body.size() - pos);
            if (!f.feed(std::string_view(body).substr(pos, n))) {
                FAIL("feed failed at offset " << pos);
            }
            pos += n;
            for (auto& l : drain(f)) {
                got.push_back(std::move(l));
            }
        }
        REQUIRE(got == events);
        REQUIRE(f.pending() == 0);
    }
}

TEST_CASE("LineFramer keeps a partial line pending, hands it over and skips blank lines",
          "[framing]") {
    LineFramer f;
    REQUIRE(f.feed("\n\r\n{\"a\":1}\n{\"type\":\"MODIFIED\",\"object\":{\"kind\":"));
    auto lines = drain(f);
    REQUIRE(lines == std::vector<std::string>{"{\"a\":1}"});
    CHECK(f.pending() == std::string("{\"type\":\"MODIFIED\",\"object\":{\"kind\":").size());
    std::string rest;
    REQUIRE(f.takeRest(rest));
    CHECK(rest == "{\"type\":\"MODIFIED\",\"object\":{\"kind\":");
    CHECK(f.pending() == 0);
    CHECK_FALSE(f.takeRest(rest));
    REQUIRE(f.feed(" \r\t"));
    CHECK_FALSE(f.takeRest(rest));  // blank
    f.reset();
    CHECK(f.pending() == 0);
    CHECK(drain(f).empty());
}

TEST_CASE("LineFramer fails on a line over its limit instead of growing", "[framing]") {
    LineFramer f(16);
    REQUIRE(f.feed("0123456789"));
    CHECK_FALSE(f.feed("0123456789"));
    CHECK(f.failed());
    CHECK_FALSE(f.feed("\n"));
    f.reset();
    REQUIRE(f.feed("short\n"));
    CHECK(drain(f) == std::vector<std::string>{"short"});
}

TEST_CASE("LineFramer enforces its limit on lines that arrive whole", "[framing]") {
    // Found by fuzz_watch_stream: a line over the limit that came in one read, or a tail over
    // the limit behind an earlier newline, used to pass.
    SECTION("a complete line over the limit fails next() after the lines before it") {
        LineFramer f(16);
        REQUIRE(f.feed("short\n" + std::string(40, 'x') + "\nafter\n"));
        CHECK(drain(f) == std::vector<std::string>{"short"});
        CHECK(f.failed());
        CHECK_FALSE(f.feed("more\n"));
    }
    SECTION("an unterminated tail over the limit fails feed() even after a newline") {
        LineFramer f(16);
        CHECK_FALSE(f.feed("ok\n" + std::string(17, 'y')));
        CHECK(f.failed());
    }
    SECTION("a tail at the limit is fine") {
        LineFramer f(16);
        REQUIRE(f.feed("ok\n" + std::string(16, 'y')));
        CHECK(drain(f) == std::vector<std::string>{"ok"});
        REQUIRE(f.feed("\n"));
        CHECK(drain(f) == std::vector<std::string>{std::string(16, 'y')});
    }
}
