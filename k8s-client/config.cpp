#include "k8s-client/config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ipvs/net.h"

namespace kipvs::k8s {

std::string ServerUrl::hostHeader() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    const std::uint16_t dflt = tls ? 443 : 80;
    if (port != dflt) {
        h += ':' + std::to_string(port);
    }
    return h;
}

std::string ServerUrl::toString() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return std::string(tls ? "https://" : "http://") + h + ":" + std::to_string(port) + pathPrefix;
}

Result<ServerUrl> parseServerUrl(std::string_view url) {
    ServerUrl out;
    std::string_view rest = url;
    if (rest.substr(0, 8) == "https://") {
        rest.remove_prefix(8);
    } else if (rest.substr(0, 7) == "http://") {
        out.tls = false;
        rest.remove_prefix(7);
    } else if (rest.find("://") != std::string_view::npos) {
        return Error::invalid("\"" + std::string(url) + "\": only http and https are supported");
    }
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) {
        std::string_view path = rest.substr(slash);
        if (path.find_first_of("?#") != std::string_view::npos) {
            return Error::invalid("\"" + std::string(url) + "\": query or fragment not allowed");
        }
        while (!path.empty() && path.back() == '/') {
            path.remove_suffix(1);
        }
        out.pathPrefix = std::string(path);
    }
    if (authority.find('@') != std::string_view::npos) {
        return Error::invalid("\"" + std::string(url) + "\": user info not allowed");
    }
    std::string_view hostPart = authority;
    std::string_view portPart;
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) {
            return Error::invalid("\"" + std::string(url) + "\": unterminated [IPv6] host");
        }
        hostPart = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                return Error::invalid("\"" + std::string(url) + "\": bad host");
            }
            portPart = after.substr(1);
        }
        if (!net::IpAddress::parse(hostPart)) {
            return Error::invalid("\"" + std::string(url) + "\": bad IPv6 address");
        }
    } else {
        const auto colon = authority.rfind(':');
        if (colon != std::string_view::npos) {
            if (authority.find(':') != colon) {
                return Error::invalid("\"" + std::string(url) + "\": IPv6 host needs brackets");
            }
            hostPart = authority.substr(0, colon);
            portPart = authority.substr(colon + 1);
        }
    }
    if (hostPart.empty()) {
        return Error::invalid("\"" + std::string(url) + "\": no host");
    }
    out.host = std::string(hostPart);
    out.hostIsIp = net::IpAddress::parse(hostPart).has_value();
    out.port = out.tls ? 443 : 80;
    if (!portPart.empty()) {
        unsigned p = 0;
        auto [ptr, ec] = std::from_chars(portPart.data(), portPart.data() + portPart.size(), p);
        if (ec != std::errc() || ptr != portPart.data() + portPart.size() || p == 0 || p > 65535) {
            return Error::invalid("\"" + std::string(url) + "\": bad port");
        }
        out.port = static_cast<std::uint16_t>(p);
    }
    return out;
}

Result<std::string> readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return Error::sys(errno != 0 ? errno : ENOENT, "read " + path);
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) {
        return Error::sys(EIO, "read " + path);
    }
    return ss.str();
}

bool getEnv(const std::string& name, std::string& value) {
    const char* v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): startup only
    if (v == nullptr) {
        return false;
    }
    value = v;
    return true;
}

bool decodeBase64(std::string_view in, std::string& out) {
    out.clear();
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t pad = 0;
    std::size_t chars = 0;
    for (char c : in) {
        if (c == '\r' || c == '\n') {
            continue;
        }
        int v = -1;
        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';
        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;
        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;
        } else if (c == '+') {
            v = 62;
        } else if (c == '/') {
            v = 63;
        } else if (c == '=') {
            ++pad;
            ++chars;
            continue;
        } else {
            return false;
        }
        if (pad > 0) {
            return false;  // data after padding
        }
        ++chars;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    if (pad > 2 || (pad > 0 && chars % 4 != 0) || (chars - pad) % 4 == 1) {
        return false;
    }
    // Leftover bits must be zero, as Go's strict decoder requires.
    return bits < 6 && (acc & ((1U << bits) - 1)) == 0;
}

namespace {

class KubeconfigReader {
  public:
    KubeconfigReader(std::string path, const ReadFileFn& read)
        : path_(std::move(path)), read_(read) {}

    Error error(const std::string& field, const std::string& reason) const {
        return Error::invalid("kubeconfig " + path_ + ": " + (field.empty() ? "" : field + ": ") +
                              reason);
    }

    std::string resolve(const std::string& p) const {
        if (p.empty() || p.front() == '/') {
            return p;
        }
        const auto slash = path_.rfind('/');
        return slash == std::string::npos ? p : path_.substr(0, slash + 1) + p;
    }

    // A string field; absent or null is "".
    Result<std::string> str(const YAML::Node& n, const std::string& key,
                            const std::string& path) const {
        const YAML::Node v = n[key];
        if (!v || v.IsNull()) {
            return std::string();
        }
        if (!v.IsScalar()) {
            return error(path, "not a string");
        }
        return v.Scalar();
    }

    Result<bool> boolean(const YAML::Node& n, const std::string& key,
                         const std::string& path) const {
        const YAML::Node v = n[key];
        if (!v || v.IsNull()) {
            return false;
        }
        bool b = false;
        if (!v.IsScalar() || !YAML::convert<bool>::decode(v, b)) {
            return error(path, "not a boolean");
        }
        return b;
    }

    // `key-data` (base64) wins over `key` (a file path).
    // `path`, when given, receives the file the PEM was read from (left alone for inline data).
    Result<std::string> pem(const YAML::Node& n, const std::string& key, const std::string& base,
                            std::string& source, std::string* path = nullptr) const {
        auto data = str(n, key + "-data", base + "." + key + "-data");
        if (!data) {
            return data.error();
        }
        if (!data->empty()) {
            std::string out;
            if (!decodeBase64(*data, out)) {
                return error(base + "." + key + "-data", "not valid base64");
            }
            source = "kubeconfig " + path_ + ": " + base + "." + key + "-data";
            return out;
        }
        auto file = str(n, key, base + "." + key);
        if (!file) {
            return file.error();
        }
        if (file->empty()) {
            return std::string();
        }
        const std::string full = resolve(*file);
        auto content = read_(full);
        if (!content) {
            return error(base + "." + key, content.error().message);
        }
        source = "kubeconfig " + path_ + ": " + base + "." + key + " (" + full + ")";
        if (path != nullptr) {
            *path = full;
        }
        return *content;
    }

    // Index of the entry of `list` (a sequence of {name, <inner>}) named `name`.
    Result<std::size_t> find(const YAML::Node& root, const std::string& list,
                             const std::string& name, const std::string& referrer) const {
        const YAML::Node seq = root[list];
        if (seq && !seq.IsNull() && !seq.IsSequence()) {
            return error(list, "not a list");
        }
        if (seq) {
            for (std::size_t i = 0; i < seq.size(); ++i) {
                const YAML::Node e = seq[i];
                if (e.IsMap() && e["name"] && e["name"].IsScalar() && e["name"].Scalar() == name) {
                    return i;
                }
            }
        }
        return error(referrer, "no entry named \"" + name + "\" in " + list);
    }

    Result<ClientConfig> parse(std::string_view text, const std::string& master) const;

  private:
    std::string path_;
    const ReadFileFn& read_;
};

Result<ClientConfig> KubeconfigReader::parse(std::string_view text,
                                             const std::string& master) const {
    YAML::Node root;
    try {
        root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        return error("", std::string("not valid YAML: ") + e.what());
    }
    if (!root.IsMap()) {
        return error("", "not a kubeconfig (top level is not a map)");
    }
    ClientConfig cfg;
    cfg.source = "kubeconfig " + path_;
    try {
        auto current = str(root, "current-context", "current-context");
        if (!current) {
            return current.error();
        }
        std::string ctxName = *current;
        const YAML::Node contexts = root["contexts"];
        if (ctxName.empty()) {
            if (!contexts || !contexts.IsSequence() || contexts.size() != 1 ||
                !contexts[0]["name"]) {
                return error("current-context", "not set");
            }
            ctxName = contexts[0]["name"].Scalar();
        }
        auto ci = find(root, "contexts", ctxName, "current-context");
        if (!ci) {
            return ci.error();
        }
        const std::string cbase = "contexts[" + std::to_string(*ci) + "].context";
        const YAML::Node ctx = contexts[*ci]["context"];
        if (!ctx || !ctx.IsMap()) {
            return error(cbase, "missing");
        }
        auto clusterName = str(ctx, "cluster", cbase + ".cluster");
        if (!clusterName) {
            return clusterName.error();
        }
        auto userName = str(ctx, "user", cbase + ".user");
        if (!userName) {
            return userName.error();
        }

        // Cluster.
        if (clusterName->empty()) {
            return error(cbase + ".cluster", "not set");
        }
        auto ki = find(root, "clusters", *clusterName, cbase + ".cluster");
        if (!ki) {
            return ki.error();
        }
        const std::string kbase = "clusters[" + std::to_string(*ki) + "].cluster";
        const YAML::Node cluster = root["clusters"][*ki]["cluster"];
        if (!cluster || !cluster.IsMap()) {
            return error(kbase, "missing");
        }
        auto server = str(cluster, "server", kbase + ".server");
        if (!server) {
            return server.error();
        }
        if (!master.empty()) {
            auto url = parseServerUrl(master);
            if (!url) {
                return Error::invalid("--master: " + url.error().message);
            }
            cfg.server = *url;
        } else if (server->empty()) {
            return error(kbase + ".server", "not set");
        } else {
            auto url = parseServerUrl(*server);
            if (!url) {
                return error(kbase + ".server", url.error().message);
            }
            cfg.server = *url;
        }
        auto ca = pem(cluster, "certificate-authority", kbase, cfg.caSource);
        if (!ca) {
            return ca.error();
        }
        cfg.caPem = *ca;
        auto insecure =
            boolean(cluster, "insecure-skip-tls-verify", kbase + ".insecure-skip-tls-verify");
        if (!insecure) {
            return insecure.error();
        }
        cfg.insecureSkipTlsVerify = *insecure;
        if (cfg.insecureSkipTlsVerify && !cfg.caPem.empty()) {
            return error(kbase + ".insecure-skip-tls-verify",
                         "specifying a root certificates file with the insecure flag is not "
                         "allowed");
        }
        auto sni = str(cluster, "tls-server-name", kbase + ".tls-server-name");
        if (!sni) {
            return sni.error();
        }
        cfg.tlsServerName = *sni;
        auto proxy = str(cluster, "proxy-url", kbase + ".proxy-url");
        if (!proxy) {
            return proxy.error();
        }
        if (!proxy->empty()) {
            return error(kbase + ".proxy-url", "HTTP proxies are not supported");
        }

        // User (a context without one is anonymous).
        if (!userName->empty()) {
            auto ui = find(root, "users", *userName, cbase + ".user");
            if (!ui) {
                return ui.error();
            }
            const std::string ubase = "users[" + std::to_string(*ui) + "].user";
            const YAML::Node user = root["users"][*ui]["user"];
            if (user && !user.IsNull() && !user.IsMap()) {
                return error(ubase, "not a map");
            }
            if (user && user.IsMap()) {
                for (const char* unsupported : {"exec", "auth-provider"}) {
                    if (user[unsupported] && !user[unsupported].IsNull()) {
                        return error(ubase + "." + unsupported,
                                     "credential plugins are not supported by kube-ipvs; use a "
                                     "token, tokenFile or client certificate");
                    }
                }
                for (const char* unsupported : {"username", "password", "as", "as-groups"}) {
                    if (user[unsupported] && !user[unsupported].IsNull()) {
                        return error(ubase + "." + unsupported,
                                     "basic auth and impersonation are not supported");
                    }
                }
                auto cert = pem(user, "client-certificate", ubase, cfg.clientCertSource,
                                &cfg.clientCertFile);
                if (!cert) {
                    return cert.error();
                }
                auto key = pem(user, "client-key", ubase, cfg.clientKeySource, &cfg.clientKeyFile);
                if (!key) {
                    return key.error();
                }
                if (cert->empty() != key->empty()) {
                    return error(ubase + (cert->empty() ? ".client-certificate" : ".client-key"),
                                 "missing (a client certificate needs its key and vice versa)");
                }
                cfg.clientCertPem = *cert;
                cfg.clientKeyPem = *key;
                auto token = str(user, "token", ubase + ".token");
                if (!token) {
                    return token.error();
                }
                cfg.token = *token;
                auto tokenFile = str(user, "tokenFile", ubase + ".tokenFile");
                if (!tokenFile) {
                    return tokenFile.error();
                }
                cfg.tokenFile = resolve(*tokenFile);
                if (!cfg.tokenFile.empty() && cfg.token.empty()) {
                    // Read now, so that a missing file is a startup error naming the field.
                    auto t = read_(cfg.tokenFile);
                    if (!t) {
                        return error(ubase + ".tokenFile", t.error().message);
                    }
                }
            }
        }
    } catch (const YAML::Exception& e) {
        return error("", std::string("malformed: ") + e.what());
    }
    return cfg;
}

}  // namespace

Result<ClientConfig> parseKubeconfig(std::string_view text, const std::string& path,
                                     const std::string& master, const ReadFileFn& read) {
    return KubeconfigReader(path, read).parse(text, master);
}

Result<ClientConfig> loadKubeconfig(const std::string& path, const std::string& master,
                                    const ReadFileFn& read) {
    auto text = read(path);
    if (!text) {
        return Error::invalid("kubeconfig " + path + ": " + text.error().message);
    }
    return parseKubeconfig(*text, path, master, read);
}

Result<ClientConfig> inClusterConfig(const GetEnvFn& env, const ReadFileFn& read,
                                     std::string_view saDir) {
    std::string host;
    std::string port;
    if (!env("KUBERNETES_SERVICE_HOST", host) || !env("KUBERNETES_SERVICE_PORT", port) ||
        host.empty() || port.empty()) {
        return Error::invalid(
            "in-cluster config: unable to load in-cluster configuration, "
            "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined");
    }
    const bool v6 = host.find(':') != std::string::npos;
    auto url = parseServerUrl("https://" + (v6 ? "[" + host + "]" : host) + ":" + port);
    if (!url) {
        return Error::invalid("in-cluster config: KUBERNETES_SERVICE_HOST/PORT: " +
                              url.error().message);
    }
    ClientConfig cfg;
    cfg.source = "in-cluster config";
    cfg.server = *url;
    cfg.tokenFile = std::string(saDir) + "/token";
    auto token = read(cfg.tokenFile);
    if (!token) {
        return Error::invalid("in-cluster config: " + token.error().message);
    }
    const std::string caPath = std::string(saDir) + "/ca.crt";
    // client-go logs and falls back to the system roots when the CA cannot be read.
    if (auto ca = read(caPath)) {
        cfg.caPem = *ca;
        cfg.caSource = "in-cluster config: " + caPath;
    }
    return cfg;
}

Result<ClientConfig> resolveClientConfig(const std::string& kubeconfig, const std::string& master,
                                         const GetEnvFn& env, const ReadFileFn& read) {
    if (kubeconfig.empty() && master.empty()) {
        return inClusterConfig(env, read);
    }
    if (kubeconfig.empty()) {
        auto url = parseServerUrl(master);
        if (!url) {
            return Error::invalid("--master: " + url.error().message);
        }
        ClientConfig cfg;
        cfg.server = *url;
        cfg.source = "--master";
        return cfg;
    }
    return loadKubeconfig(kubeconfig, master, read);
}

}  // namespace kipvs::k8s
