// kube-proxy's configuration (proxy/config.h): a KubeProxyConfiguration file, the command line,
// and Go durations.
//
// Input: byte 0 picks the mode, the rest is text.
//   mode % 3 == 0: a KubeProxyConfiguration document (parseConfigYaml, then validate)
//   mode % 3 == 1: the command line, one argument per line (parseCommandLine); inputs with
//                  --config are skipped, since that flag reads a file
//   mode % 3 == 2: a Go duration (parseGoDuration / formatGoDuration)
// Invariants:
//  * an error names the file (or, on the command line, is not empty);
//  * a valid configuration written out (toYaml, as --write-config-to does) reads back into a
//    fresh Config that is valid and writes out the same text; its /configz body is JSON;
//  * a duration that parses formats to text that parses to the same duration.
#include <boost/json.hpp>

#include <string>
#include <vector>

#include "proxy/config.h"
#include "tests/fuzz/fuzz.h"

namespace kipvs::fuzz {

namespace {

constexpr const char* kSource = "/etc/kube-ipvs/config.conf";

void writtenReadsBack(const proxy::Config& c) {
    boost::json::error_code ec;
    const std::string configz = c.configzJson();
    (void)boost::json::parse(configz, ec);
    FUZZ_CHECK_MSG(!ec, configz);

    const std::string written = c.toYaml();
    proxy::Config again;
    auto r = proxy::parseConfigYaml(written, "written", again);
    FUZZ_CHECK_MSG(r.has_value(), (r ? std::string() : r.error().message) + "\n" + written);
    auto v = again.validate();
    FUZZ_CHECK_MSG(v.has_value(), (v ? std::string() : v.error().message) + "\n" + written);
    const std::string rewritten = again.toYaml();
    FUZZ_CHECK_MSG(rewritten == written, written + "---\n" + rewritten);
}

void configFile(std::string_view text) {
    proxy::Config cfg;
    auto r = proxy::parseConfigYaml(text, kSource, cfg);
    if (!r) {
        FUZZ_CHECK_MSG(r.error().message.rfind(std::string(kSource) + ": ", 0) == 0,
                       r.error().message);
        return;
    }
    if (cfg.validate()) {
        writtenReadsBack(cfg);
    }
}

void commandLine(std::string_view text) {
    std::vector<std::string> args;
    std::size_t start = 0;
    while (start <= text.size()) {
        auto end = text.find('\n', start);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        args.emplace_back(text.substr(start, end - start));
        start = end + 1;
    }
    for (const auto& a : args) {
        if (a == "--config" || a.rfind("--config=", 0) == 0) {
            return;
        }
    }
    auto r = proxy::parseCommandLine(args);
    if (!r) {
        FUZZ_CHECK(!r.error().message.empty());
        return;
    }
    if (r->showHelp || r->showVersion) {
        return;
    }
    FUZZ_CHECK(r->mode == "ipvs");
    FUZZ_CHECK(r->validate().has_value());
    writtenReadsBack(*r);
}

void duration(std::string_view text) {
    auto d = proxy::parseGoDuration(text);
    if (!d) {
        return;
    }
    const std::string printed = proxy::formatGoDuration(*d);
    auto again = proxy::parseGoDuration(printed);
    FUZZ_CHECK_MSG(again && *again == *d, std::string(text) + " -> " + printed + " -> " +
                                              (again ? std::to_string(again->count()) : "error") +
                                              " vs " + std::to_string(d->count()));
}

}  // namespace

int proxyConfig(const std::uint8_t* data, std::size_t size) {
    if (size < 1) {
        return 0;
    }
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 3) {
        case 0:
            configFile(text);
            break;
        case 1:
            commandLine(text);
            break;
        default:
            duration(text);
            break;
    }
    return 0;
}

}  // namespace kipvs::fuzz

#ifndef KIPVS_FUZZ_REGRESSION
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return kipvs::fuzz::proxyConfig(data, size);
}
#endif
