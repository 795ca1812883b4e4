// kubeconfig, in-cluster config and --master: the fields of kubernetes-api.md §6.2 and every
// error path, with an in-memory file system.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <map>

#include "k8s-client/config.h"
#include "k8s-client/http_transport.h"

using namespace kipvs;
using namespace kipvs::k8s;

namespace {

struct Files {
    std::map<std::string, std::string> files;
    ReadFileFn reader() {
        return [this](const std::string& p) -> Result<std::string> {
            auto it = files.find(p);
            if (it == files.end()) {
                return Error::sys(ENOENT, "read " + p);
            }
            return it->second;
        };
    }
};

// base64("PEM-CA"), base64("PEM-CERT"), base64("PEM-KEY")
constexpr const char* kCaB64 = "UEVNLUNB";
constexpr const char* kCertB64 = "UEVNLUNFUlQ=";
constexpr const char* kKeyB64 = "UEVNLUtFWQ==";

std::string kubeconfig(const std::string& cluster, const std::string& user,
                       const std::string& current = "ctx") {
    return "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: "
           "https://other:1\n"
           "- name: c1\n  cluster:\n" +
           cluster + "users:\n- name: u1\n  user:\n" + user +
           "contexts:\n- name: ctx\n  context:\n    cluster: c1\n    user: u1\n"
           "- name: ctx2\n  context:\n    cluster: c1\n    user: u1\n"
           "current-context: " +
           current + "\n";
}

Result<ClientConfig> parse(Files& fs, const std::string& text, const std::string& master = "") {
    return parseKubeconfig(text, "/etc/k/kc.yaml", master, fs.reader());
}

std::string errorOf(const Result<ClientConfig>& r) {
    return r ? std::string("<ok>") : r.error().message;
}

}  // namespace

TEST_CASE("kubeconfig: data fields, token, SNI, path prefix", "[config]") {
    Files fs;
    auto r = parse(fs, kubeconfig(std::string("    server: https://api.example.com:6443/k8s/\n") +
                                      "    certificate-authority-data: " + kCaB64 + "\n" +
                                      "    tls-server-name: kubernetes.default.svc\n",
                                  std::string("    client-certificate-data: ") + kCertB64 +
                                      "\n    client-key-data: " + kKeyB64 + "\n    token: abc\n"));
    REQUIRE(r.has_value());
    CHECK(r->server.host == "api.example.com");
    CHECK(r->server.port == 6443);
    CHECK(r->server.pathPrefix == "/k8s");
    CHECK(r->server.tls);
    CHECK(r->caPem == "PEM-CA");
    CHECK(r->clientCertPem == "PEM-CERT");
    CHECK(r->clientKeyPem == "PEM-KEY");
    CHECK(r->token == "abc");
    CHECK(r->tlsServerName == "kubernetes.default.svc");
    CHECK(r->caSource ==
          "kubeconfig /etc/k/kc.yaml: clusters[1].cluster.certificate-authority-data");
}

TEST_CASE("kubeconfig: files relative to the kubeconfig's directory, tokenFile, --master",
          "[config]") {
    Files fs;
    fs.files["/etc/k/ca.crt"] = "CA-FROM-FILE";
    fs.files["/etc/k/pki/c.crt"] = "CERT";
    fs.files["/etc/k/pki/c.key"] = "KEY";
    fs.files["/var/run/token"] = "tok\n";
    auto r = parse(fs,
                   kubeconfig("    server: https://10.0.0.1\n    certificate-authority: ca.crt\n",
                              "    client-certificate: pki/c.crt\n    client-key: pki/c.key\n"
                              "    tokenFile: /var/run/token\n"),
                   "https://[fd00::1]:8443");
    REQUIRE(r.has_value());
    CHECK(r->caPem == "CA-FROM-FILE");
    CHECK(r->clientCertPem == "CERT");
    CHECK(r->tokenFile == "/var/run/token");
    CHECK(r->server.host == "fd00::1");  // --master wins
    CHECK(r->server.port == 8443);
    CHECK(r->server.hostHeader() == "[fd00::1]:8443");
    CHECK(r->clientKeySource ==
          "kubeconfig /etc/k/kc.yaml: users[0].user.client-key (/etc/k/pki/c.key)");
}

TEST_CASE("kubeconfig: kubeadm's kube-proxy JSON form", "[config]") {
    Files fs;
    fs.files["/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"] = "CA";
    fs.files["/var/run/secrets/kubernetes.io/serviceaccount/token"] = "sa-token";
    auto r =
        parse(fs, R"({"apiVersion":"v1","kind":"Config","clusters":[{"name":"default","cluster":{
        "certificate-authority":"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
        "server":"https://control-plane.example:6443"}}],
      "users":[{"name":"default","user":{"tokenFile":"/var/run/secrets/kubernetes.io/serviceaccount/token"}}],
      "contexts":[{"name":"default","context":{"cluster":"default","namespace":"default","user":"default"}}],
      "current-context":"default"})");
    REQUIRE(r.has_value());
    CHECK(r->caPem == "CA");
    CHECK(r->tokenFile == "/var/run/secrets/kubernetes.io/serviceaccount/token");
    CHECK(r->server.host == "control-plane.example");
}

TEST_CASE("kubeconfig errors name the file and the field", "[config]") {
    Files fs;
    const std::string okCluster = "    server: https://h:1\n";
    struct Case {
        std::string text;
        std::string error;
    };
    const Case c = GENERATE_COPY(
        Case{kubeconfig(okCluster, std::string("    client-certificate-data: ") + kCertB64 +
                                       "\n    client-key-data: '%%%'\n"),
             "kubeconfig /etc/k/kc.yaml: users[0].user.client-key-data: not valid base64"},
        Case{"a: [1, 2", "kubeconfig /etc/k/kc.yaml: not valid YAML: "},
        Case{"- 1\n", "kubeconfig /etc/k/kc.yaml: not a kubeconfig (top level is not a map)"},
        Case{kubeconfig(okCluster, "    token: t\n", "\"\""),
             "kubeconfig /etc/k/kc.yaml: current-context: not set"},
        Case{kubeconfig(okCluster, "    token: t\n", "nope"),
             "kubeconfig /etc/k/kc.yaml: current-context: no entry named \"nope\" in contexts"},
        Case{kubeconfig("    insecure-skip-tls-verify: true\n", "    token: t\n"),
             "kubeconfig /etc/k/kc.yaml: clusters[1].cluster.server: not set"},
        Case{kubeconfig("    server: ftp://h\n", "    token: t\n"),
             "kubeconfig /etc/k/kc.yaml: clusters[1].cluster.server: \"ftp://h\": only http and "
             "https are supported"},
        Case{kubeconfig(okCluster + "    certificate-authority-data: '!!'\n", "    token: t\n"),
             "kubeconfig /etc/k/kc.yaml: clusters[1].cluster.certificate-authority-data: not valid "
             "base64"},
        Case{kubeconfig(okCluster + "    certificate-authority: missing.crt\n", "    token: t\n"),
             "kubeconfig /etc/k/kc.yaml: clusters[1].cluster.certificate-authority: read "
             "/etc/k/missing.crt: No such file or directory"},
        Case{kubeconfig(okCluster + "    certificate-authority-data: " + kCaB64 +
                            "\n    insecure-skip-tls-verify: true\n",
                        "    token: t\n"),
             "kubeconfig /etc/k/kc.yaml: clusters[1].cluster.insecure-skip-tls-verify: specifying "
             "a root certificates file with the insecure flag is not allowed"},
        Case{kubeconfig(okCluster + "    insecure-skip-tls-verify: maybe\n", "    token: t\n"),
             "kubeconfig /etc/k/kc.yaml: clusters[1].cluster.insecure-skip-tls-verify: not a "
             "boolean"},
        Case{kubeconfig(okCluster + "    proxy-url: http://proxy:3128\n", "    token: t\n"),
             "kubeconfig /etc/k/kc.yaml: clusters[1].cluster.proxy-url: HTTP proxies are not "
             "supported"},
        Case{kubeconfig(okCluster, "    exec:\n      command: aws\n"),
             "kubeconfig /etc/k/kc.yaml: users[0].user.exec: credential plugins are not supported "
             "by kube-ipvs; use a token, tokenFile or client certificate"},
        Case{kubeconfig(okCluster, "    auth-provider:\n      name: gcp\n"),
             "kubeconfig /etc/k/kc.yaml: users[0].user.auth-provider: credential plugins are not "
             "supported by kube-ipvs; use a token, tokenFile or client certificate"},
        Case{kubeconfig(okCluster, "    username: admin\n"),
             "kubeconfig /etc/k/kc.yaml: users[0].user.username: basic auth and impersonation are "
             "not supported"},
        Case{kubeconfig(okCluster, std::string("    client-certificate-data: ") + kCertB64 + "\n"),
             "kubeconfig /etc/k/kc.yaml: users[0].user.client-key: missing (a client certificate "
             "needs its key and vice versa)"},
        Case{kubeconfig(okCluster, "    tokenFile: /nope\n"),
             "kubeconfig /etc/k/kc.yaml: users[0].user.tokenFile: read /nope: No such file or "
             "directory"});
    const auto err = errorOf(parse(fs, c.text));
    CHECK(err.substr(0, c.error.size()) == c.error);
}

TEST_CASE("kubeconfig file missing", "[config]") {
    Files fs;
    auto r = loadKubeconfig("/etc/k/none.yaml", "", fs.reader());
    CHECK(errorOf(r) ==
          "kubeconfig /etc/k/none.yaml: read /etc/k/none.yaml: No such file or directory");
}

TEST_CASE("in-cluster config and kube-proxy's choice", "[config]") {
    Files fs;
    std::map<std::string, std::string> env;
    GetEnvFn getenv = [&](const std::string& k, std::string& v) {
        auto it = env.find(k);
        if (it == env.end()) {
            return false;
        }
        v = it->second;
        return true;
    };
    CHECK(errorOf(inClusterConfig(getenv, fs.reader()))
              .find("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined") !=
          std::string::npos);
    env["KUBERNETES_SERVICE_HOST"] = "fd00:10:96::1";
    env["KUBERNETES_SERVICE_PORT"] = "443";
    CHECK(errorOf(inClusterConfig(getenv, fs.reader())) ==
          "in-cluster config: read /var/run/secrets/kubernetes.io/serviceaccount/token: No such "
          "file or directory");
    fs.files["/var/run/secrets/kubernetes.io/serviceaccount/token"] = "sa";
    auto r = inClusterConfig(getenv, fs.reader());
    REQUIRE(r.has_value());
    CHECK(r->server.toString() == "https://[fd00:10:96::1]:443");
    CHECK(r->tokenFile == "/var/run/secrets/kubernetes.io/serviceaccount/token");
    CHECK(r->caPem.empty());  // unreadable CA: system roots, as client-go
    fs.files["/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"] = "CA";
    CHECK(inClusterConfig(getenv, fs.reader())->caPem == "CA");

    CHECK(resolveClientConfig("", "", getenv, fs.reader())->source == "in-cluster config");
    auto m = resolveClientConfig("", "http://127.0.0.1:8080", getenv, fs.reader());
    REQUIRE(m.has_value());
    CHECK(m->source == "--master");
    CHECK_FALSE(m->server.tls);
    CHECK(errorOf(resolveClientConfig("", "https://[::1", getenv, fs.reader())) ==
          "--master: \"https://[::1\": unterminated [IPv6] host");
}

TEST_CASE("server URLs", "[config]") {
    CHECK(parseServerUrl("https://h")->port == 443);
    CHECK(parseServerUrl("http://h")->port == 80);
    CHECK(parseServerUrl("h:6443")->tls);
    CHECK(parseServerUrl("https://1.2.3.4:6443")->hostIsIp);
    CHECK_FALSE(parseServerUrl("https://h:0").has_value());
    CHECK_FALSE(parseServerUrl("https://h:99999").has_value());
    CHECK_FALSE(parseServerUrl("https://fd00::1:443").has_value());
    CHECK_FALSE(parseServerUrl("https://u@h").has_value());
    CHECK_FALSE(parseServerUrl("https://h/p?q=1").has_value());
    CHECK(parseServerUrl("https://h:443/a/b")->hostHeader() == "h");
}

TEST_CASE("base64 is strict", "[config]") {
    std::string out;
    CHECK(decodeBase64("aGVsbG8=", out));
    CHECK(out == "hello");
    CHECK(decodeBase64("aGVs\nbG8=", out));
    CHECK(out == "hello");
    CHECK_FALSE(decodeBase64("aGVsbG8=x", out));
    CHECK_FALSE(decodeBase64("a", out));
    CHECK_FALSE(decodeBase64("aGVsbG9=", out));  // non-zero trailing bits
    CHECK_FALSE(decodeBase64("a b", out));
}

TEST_CASE("bad TLS material is a startup error naming its source", "[config][tls]") {
    boost::asio::io_context ioc;
    ClientConfig cfg;
    cfg.server = *parseServerUrl("https://127.0.0.1:6443");
    cfg.caPem = "not a pem";
    cfg.caSource = "kubeconfig /k.yaml: clusters[0].cluster.certificate-authority-data";
    auto t = makeHttpTransport(ioc, cfg);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().message.rfind(
              "kubeconfig /k.yaml: clusters[0].cluster.certificate-authority-data: not a PEM "
              "certificate bundle",
              0) == 0);
    cfg.caPem.clear();
    cfg.clientCertPem = "garbage";
    cfg.clientKeyPem = "garbage";
    cfg.clientCertSource = "kubeconfig /k.yaml: users[0].user.client-certificate-data";
    t = makeHttpTransport(ioc, cfg);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.error().message.rfind(
              "kubeconfig /k.yaml: users[0].user.client-certificate-data: not a PEM certificate",
              0) == 0);
    cfg.server = *parseServerUrl("http://127.0.0.1:8080");
    CHECK(makeHttpTransport(ioc, cfg).has_value());  // plain HTTP ignores TLS material
}
