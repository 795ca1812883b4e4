// kubeconfig parsing (k8s-client/config.h) with an injected file reader: no file is read.
//
// Input: byte 0 options, the rest is text.
//   opt & 1: --master is given (it replaces the cluster's server)
//   opt & 2: every file read fails
//   opt & 4: the text is a server URL (parseServerUrl) and base64 (decodeBase64) instead
// Invariants:
//  * an accepted kubeconfig has a host and a port, a client certificate only with its key,
//    never a CA together with insecure-skip-tls-verify, and reads files only at absolute
//    paths (relative ones resolved against the kubeconfig's directory); parsing is
//    deterministic; an error names the kubeconfig (or --master);
//  * a server URL that parses prints (toString) to a URL that parses to the same fields;
//  * base64: what decodes re-encodes and decodes to the same bytes; any bytes encode and
//    decode back.
#include <string>
#include <vector>

#include "k8s-client/config.h"
#include "tests/fuzz/fuzz.h"

namespace kipvs::fuzz {

namespace {

constexpr const char* kPath = "/etc/k/kc.yaml";

std::string base64(std::string_view in) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const std::uint32_t v = (std::uint32_t{static_cast<std::uint8_t>(in[i])} << 16) |
                                (std::uint32_t{static_cast<std::uint8_t>(in[i + 1])} << 8) |
                                std::uint32_t{static_cast<std::uint8_t>(in[i + 2])};
        for (int s = 18; s >= 0; s -= 6) {
            out += kAlphabet[(v >> s) & 63];
        }
    }
    if (i + 1 == in.size()) {
        const std::uint32_t v = std::uint32_t{static_cast<std::uint8_t>(in[i])} << 16;
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        const std::uint32_t v = (std::uint32_t{static_cast<std::uint8_t>(in[i])} << 16) |
                                (std::uint32_t{static_cast<std::uint8_t>(in[i + 1])} << 8);
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

void urlAndBase64(std::string_view text) {
    if (auto url = k8s::parseServerUrl(text)) {
        FUZZ_CHECK(!url->host.empty());
        FUZZ_CHECK(url->port != 0);
        const std::string printed = url->toString();
        auto again = k8s::parseServerUrl(printed);
        FUZZ_CHECK_MSG(again.has_value(), printed);
        FUZZ_CHECK_MSG(again->tls == url->tls && again->host == url->host &&
                           again->port == url->port && again->pathPrefix == url->pathPrefix &&
                           again->hostIsIp == url->hostIsIp,
                       printed);
        FUZZ_CHECK(!url->hostHeader().empty());
    }
    std::string decoded;
    if (k8s::decodeBase64(text, decoded)) {
        std::string twice;
        FUZZ_CHECK(k8s::decodeBase64(base64(decoded), twice));
        FUZZ_CHECK(twice == decoded);
    }
    std::string back;
    FUZZ_CHECK(k8s::decodeBase64(base64(text), back));
    FUZZ_CHECK(back == text);
}

struct Reads {
    bool failAll = false;
    std::vector<std::string> paths;
    k8s::ReadFileFn reader() {
        return [this](const std::string& p) -> Result<std::string> {
            paths.push_back(p);
            if (failAll) {
                return Error::sys(ENOENT, "read " + p);
            }
            return "PEM of " + p;
        };
    }
};

}  // namespace

int kubeconfig(const std::uint8_t* data, std::size_t size) {
    if (size < 1) {
        return 0;
    }
    const int opt = data[0];
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if ((opt & 4) != 0) {
        urlAndBase64(text);
        return 0;
    }
    const std::string master = (opt & 1) != 0 ? "https://10.0.0.1:6443/prefix" : "";
    Reads reads;
    reads.failAll = (opt & 2) != 0;
    auto cfg = k8s::parseKubeconfig(text, kPath, master, reads.reader());
    for (const auto& p : reads.paths) {
        FUZZ_CHECK_MSG(!p.empty() && p.front() == '/', p);
    }
    Reads again;
    again.failAll = reads.failAll;
    auto cfg2 = k8s::parseKubeconfig(text, kPath, master, again.reader());
    FUZZ_CHECK(cfg.has_value() == cfg2.has_value());
    FUZZ_CHECK(reads.paths == again.paths);
    if (!cfg) {
        const auto& m = cfg.error().message;
        FUZZ_CHECK_MSG(m.rfind(std::string("kubeconfig ") + kPath + ": ", 0) == 0 ||
                           m.rfind("--master: ", 0) == 0,
                       m);
        FUZZ_CHECK(m == cfg2.error().message);
        return 0;
    }
    FUZZ_CHECK(!cfg->server.host.empty());
    FUZZ_CHECK(cfg->server.port != 0);
    if (!master.empty()) {
        FUZZ_CHECK(cfg->server.host == "10.0.0.1" && cfg->server.port == 6443);
    }
    FUZZ_CHECK(!(cfg->insecureSkipTlsVerify && !cfg->caPem.empty()));
    FUZZ_CHECK(cfg->clientCertPem.empty() == cfg->clientKeyPem.empty());
    FUZZ_CHECK(cfg->source == std::string("kubeconfig ") + kPath);
    FUZZ_CHECK(cfg->tokenFile.empty() || cfg->tokenFile.front() == '/');
    FUZZ_CHECK(cfg->caPem == cfg2->caPem && cfg->token == cfg2->token &&
               cfg->tokenFile == cfg2->tokenFile && cfg->clientKeyPem == cfg2->clientKeyPem);
    return 0;
}

}  // namespace kipvs::fuzz

#ifndef KIPVS_FUZZ_REGRESSION
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return kipvs::fuzz::kubeconfig(data, size);
}
#endif
