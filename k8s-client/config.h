// Where the API server is and how to authenticate: from a kubeconfig, from the in-cluster
// service-account files, or from --master alone (kubernetes-api.md §6).
//
// kube-proxy's rule: with neither a kubeconfig nor --master, use the in-cluster config;
// otherwise load the kubeconfig (if given) and let --master override its server.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "ipvs/error.h"

namespace kipvs::k8s {

struct ServerUrl {
    bool tls = true;         // https (false: plain http)
    std::string host;        // DNS name or IP literal, without brackets
    std::uint16_t port = 0;  // defaulted from the scheme when the URL has none
    std::string pathPrefix;  // "" or "/some/prefix" (no trailing slash)
    bool hostIsIp = false;
    // "host:port" with IPv6 bracketed, for the Host header.
    std::string hostHeader() const;
    std::string toString() const;
};

// "https://10.0.0.1:6443/prefix", "http://localhost:8080", "[::1]:6443". A URL without a
// scheme is https. client-go picks http for it unless a CA, a client certificate or
// insecure-skip-tls-verify is configured; the API server has had no insecure port since
// 1.20, so https is the one that can work (and a token is never sent in clear by default).
Result<ServerUrl> parseServerUrl(std::string_view url);

struct ClientConfig {
    ServerUrl server;
    // PEM bundle to verify the server with; empty means the system roots.
    std::string caPem;
    bool insecureSkipTlsVerify = false;
    std::string tlsServerName;  // checked name (and SNI) instead of server.host
    std::string clientCertPem;  // client-certificate auth when both are set
    std::string clientKeyPem;
    // The files they were read from (kubeconfig client-certificate / client-key, not -data):
    // read again when they change, as client-go does, so that a rotated certificate (kubelet
    // style) is used without a restart.
    std::string clientCertFile;
    std::string clientKeyFile;
    std::string token;      // bearer token (static)
    std::string tokenFile;  // re-read every minute and after a 401; wins over `token` when readable
    // Where each credential came from, to name it in errors:
    //   "kubeconfig /etc/k/kc.yaml: users[0].user.client-key-data"
    std::string caSource;
    std::string clientCertSource;
    std::string clientKeySource;
    // "kubeconfig /etc/k/kc.yaml", "in-cluster config", "--master".
    std::string source;
};

// Reads a file whole. Injected so that tests can supply contents without a file system.
using ReadFileFn = std::function<Result<std::string>(const std::string& path)>;
Result<std::string> readFile(const std::string& path);

// Environment variable lookup; nullopt-like empty string with `found` false when unset.
using GetEnvFn = std::function<bool(const std::string& name, std::string& value)>;
bool getEnv(const std::string& name, std::string& value);

// Parses a kubeconfig (YAML or JSON). Errors name the file and the field, e.g.
//   kubeconfig /etc/k/kc.yaml: users[0].user.client-key-data: not valid base64
// `master`, when not empty, replaces the cluster's server.
Result<ClientConfig> loadKubeconfig(const std::string& path, const std::string& master = "",
                                    const ReadFileFn& read = readFile);
// Same, from text already read (`path` names it and resolves relative file paths).
Result<ClientConfig> parseKubeconfig(std::string_view text, const std::string& path,
                                     const std::string& master = "",
                                     const ReadFileFn& read = readFile);

inline constexpr std::string_view kServiceAccountDir =
    "/var/run/secrets/kubernetes.io/serviceaccount";

// KUBERNETES_SERVICE_HOST/_PORT plus the service-account token file and CA.
Result<ClientConfig> inClusterConfig(const GetEnvFn& env = getEnv,
                                     const ReadFileFn& read = readFile,
                                     std::string_view saDir = kServiceAccountDir);

// kube-proxy's createClient rule (see the top of this file).
Result<ClientConfig> resolveClientConfig(const std::string& kubeconfig, const std::string& master,
                                         const GetEnvFn& env = getEnv,
                                         const ReadFileFn& read = readFile);

// Strict base64 (standard alphabet, padding optional, CR/LF ignored).
bool decodeBase64(std::string_view in, std::string& out);

}  // namespace kipvs::k8s
