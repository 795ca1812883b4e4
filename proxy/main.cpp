// kube-ipvs: a node-level Kubernetes service proxy that programs Linux IPVS.
// Flags in, one of the daemon's modes out; everything else lives in the libraries.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "proxy/config.h"
#include "proxy/daemon.h"
#include "proxy/log.h"
#include "proxy/version.h"

int main(int argc, char** argv) {
    using namespace kipvs;
    const std::vector<std::string> args(argv + 1, argv + argc);
    auto cfg = proxy::parseCommandLine(args);
    if (!cfg) {
        std::fprintf(stderr, "kube-ipvs: %s\n", cfg.error().message.c_str());
        return 1;
    }
    if (cfg->showHelp) {
        std::fputs(proxy::usage().c_str(), stdout);
        return 0;
    }
    if (cfg->showVersion) {
        std::printf("kube-ipvs %s\n", kVersion);
        return 0;
    }
    log::setVerbosity(cfg->logging.verbosity);
    log::setFormat(cfg->logging.format == "json" ? log::Format::Json : log::Format::Text);
    if (!cfg->writeConfigTo.empty()) {
        std::ofstream out(cfg->writeConfigTo);
        out << cfg->toYaml();
        if (!out.flush()) {
            log::error("Cannot write the configuration", {{"file", cfg->writeConfigTo}});
            return 1;
        }
        for (const auto& note : cfg->notWritable()) {
            log::warning("The configuration file cannot keep a setting",
                         {{"file", cfg->writeConfigTo}, {"setting", note}});
        }
        log::info("Wrote the configuration", {{"file", cfg->writeConfigTo}});
        return 0;
    }
    if (cfg->cleanup) {
        return proxy::runCleanup(*cfg);
    }
    if (cfg->initOnly) {
        return proxy::runInitOnly(*cfg);
    }
    return proxy::runDaemon(*cfg);
}
