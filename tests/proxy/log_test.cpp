#include <catch2/catch.hpp>

#include <regex>
#include <string>
#include <vector>

#include "proxy/log.h"

namespace lg = kipvs::log;

namespace {
std::vector<std::string>* gLines = nullptr;
void capture(std::string_view line) {
    gLines->emplace_back(line);
}
}  // namespace

TEST_CASE("text log lines look like klog's", "[log]") {
    const auto line =
        lg::format(lg::Format::Text, lg::Severity::Warning, 0, "Bad object",
                   {{"object", "default/web"}, {"field", "spec.ports[0].port"}, {"value", 70000}},
                   lg::SourceLoc::current());
    INFO(line);
    const std::regex klog(
        R"(^W\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ log_test\.cpp:\d+\] "Bad object" object="default/web" field="spec\.ports\[0\]\.port" value=70000$)");
    CHECK(std::regex_match(line, klog));
}

TEST_CASE("JSON log lines are one escaped object", "[log]") {
    const auto line = lg::format(lg::Format::Json, lg::Severity::Info, 2, "quote \" and \n",
                                 {{"ok", true}}, lg::SourceLoc::current());
    INFO(line);
    CHECK(line.find(R"("msg":"quote \" and \n")") != std::string::npos);
    CHECK(line.find(R"("v":2)") != std::string::npos);
    CHECK(line.find(R"("ok":true})") != std::string::npos);
    CHECK(line.front() == '{');
}

TEST_CASE("verbosity drops debug lines above -v", "[log]") {
    std::vector<std::string> lines;
    gLines = &lines;
    lg::setSink(capture);
    lg::setVerbosity(2);
    lg::debug(2, "shown");
    lg::debug(3, "hidden");
    lg::error("always");
    lg::setSink(nullptr);
    lg::setVerbosity(0);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].find("\"shown\"") != std::string::npos);
    CHECK(lines[1][0] == 'E');
}
