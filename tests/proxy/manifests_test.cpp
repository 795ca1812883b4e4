// The manifests a cluster operator applies: their structure, least privilege, and that
// kube-ipvs accepts exactly the arguments and configuration they hand it.
#include <yaml-cpp/yaml.h>
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "k8s-client/config.h"
#include "proxy/config.h"

using namespace kipvs;

namespace {

std::string manifestsDir() {
    const char* src = std::getenv("KUBE_IPVS_SOURCE_ROOT");
    REQUIRE(src != nullptr);
    return std::string(src) + "/manifests/";
}

std::vector<YAML::Node> docs(const std::string& file) {
    return YAML::LoadAllFromFile(manifestsDir() + file);
}

YAML::Node find(const std::vector<YAML::Node>& ds, const std::string& kind) {
    for (const auto& d : ds) {
        if (d["kind"].as<std::string>() == kind) {
            return d;
        }
    }
    FAIL("no " << kind);
    return {};
}

YAML::Node daemonSet() {
    return find(docs("daemonset.yaml"), "DaemonSet");
}

YAML::Node container(const YAML::Node& list, const std::string& name) {
    for (const auto& c : list) {
        if (c["name"].as<std::string>() == name) {
            return c;
        }
    }
    FAIL("no container " << name);
    return {};
}

std::vector<std::string> strings(const YAML::Node& n) {
    std::vector<std::string> out;
    for (const auto& x : n) {
        out.push_back(x.as<std::string>());
    }
    return out;
}

// The ConfigMap's files, written where the DaemonSet mounts them, under a temporary root.
struct MountedConfig {
    std::string root;
    std::string mountPath;
    MountedConfig() {
        char tmpl[] = "/tmp/kube-ipvs-manifests-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        root = tmpl;
        const auto cm = find(docs("configmap.yaml"), "ConfigMap");
        mountPath = "/var/lib/kube-ipvs";
        const std::string dir = root + mountPath;
        REQUIRE(std::system(("mkdir -p " + dir).c_str()) == 0);
        for (const auto& kv : cm["data"]) {
            std::ofstream(dir + "/" + kv.first.as<std::string>()) << kv.second.as<std::string>();
        }
    }
    ~MountedConfig() { (void)std::system(("rm -rf " + root).c_str()); }
    // An argument with mount paths moved under the temporary root and $(NODE_NAME) set.
    std::string rewrite(std::string a) const {
        for (auto at = a.find(mountPath); at != std::string::npos;
             at = a.find(mountPath, at + root.size() + mountPath.size())) {
            a.insert(at, root);
        }
        if (auto at = a.find("$(NODE_NAME)"); at != std::string::npos) {
            a.replace(at, 12, "node-1");
        }
        return a;
    }
};

}  // namespace

TEST_CASE("RBAC grants get/list/watch on services, endpointslices and nodes only", "[manifests]") {
    const auto ds = docs("rbac.yaml");
    const auto sa = find(ds, "ServiceAccount");
    CHECK(sa["metadata"]["name"].as<std::string>() == "kube-ipvs");
    CHECK(sa["metadata"]["namespace"].as<std::string>() == "kube-system");

    std::map<std::string, std::set<std::string>> granted;  // "group/resource" -> verbs
    for (const auto& rule : find(ds, "ClusterRole")["rules"]) {
        for (const auto& g : rule["apiGroups"]) {
            for (const auto& r : rule["resources"]) {
                for (const auto& v : rule["verbs"]) {
                    granted[g.as<std::string>() + "/" + r.as<std::string>()].insert(
                        v.as<std::string>());
                }
            }
        }
    }
    const std::set<std::string> readOnly = {"get", "list", "watch"};
    CHECK(granted == std::map<std::string, std::set<std::string>>{
                         {"/services", readOnly},
                         {"/nodes", readOnly},
                         {"discovery.k8s.io/endpointslices", readOnly},
                     });

    const auto binding = find(ds, "ClusterRoleBinding");
    CHECK(binding["roleRef"]["name"].as<std::string>() == "kube-ipvs");
    REQUIRE(binding["subjects"].size() == 1);
    CHECK(binding["subjects"][0]["name"].as<std::string>() == "kube-ipvs");
    CHECK(binding["subjects"][0]["namespace"].as<std::string>() == "kube-system");
}

TEST_CASE("the DaemonSet has kube-proxy's shape and the least privilege that works",
          "[manifests]") {
    const auto d = daemonSet();
    const auto spec = d["spec"]["template"]["spec"];
    CHECK(d["metadata"]["namespace"].as<std::string>() == "kube-system");
    CHECK(d["spec"]["selector"]["matchLabels"]["k8s-app"].as<std::string>() ==
          d["spec"]["template"]["metadata"]["labels"]["k8s-app"].as<std::string>());
    CHECK(spec["hostNetwork"].as<bool>());
    // The node's resolver, not the cluster DNS (a Service kube-ipvs has not programmed yet on a
    // new node): ClusterFirstWithHostNet would leave a server name in the kubeconfig unresolved.
    CHECK((!spec["dnsPolicy"] || spec["dnsPolicy"].as<std::string>() == "Default"));
    CHECK(spec["priorityClassName"].as<std::string>() == "system-node-critical");
    CHECK(spec["serviceAccountName"].as<std::string>() == "kube-ipvs");
    bool tolerateAll = false;
    for (const auto& t : spec["tolerations"]) {
        tolerateAll = tolerateAll || (!t["key"] && t["operator"].as<std::string>() == "Exists");
    }
    CHECK(tolerateAll);

    const auto main = container(spec["containers"], "kube-ipvs");
    const auto sc = main["securityContext"];
    CHECK_FALSE(sc["privileged"].as<bool>());
    CHECK_FALSE(sc["allowPrivilegeEscalation"].as<bool>());
    CHECK(strings(sc["capabilities"]["drop"]) == std::vector<std::string>{"ALL"});
    CHECK(strings(sc["capabilities"]["add"]) ==
          std::vector<std::string>{"NET_ADMIN", "NET_RAW", "SYS_RESOURCE"});
    CHECK(main["livenessProbe"]["httpGet"]["path"].as<std::string>() == "/livez");
    CHECK(main["livenessProbe"]["httpGet"]["port"].as<int>() == 10256);
    CHECK(main["readinessProbe"]["httpGet"]["path"].as<std::string>() == "/healthz");
    CHECK(main["readinessProbe"]["httpGet"]["port"].as<int>() == 10256);

    std::map<std::string, std::string> mounts;  // volume -> path
    for (const auto& m : main["volumeMounts"]) {
        mounts[m["name"].as<std::string>()] = m["mountPath"].as<std::string>();
    }
    CHECK(mounts["xtables-lock"] == "/run/xtables.lock");
    CHECK(mounts["lib-modules"] == "/lib/modules");
    std::map<std::string, YAML::Node> volumes;
    for (const auto& v : spec["volumes"]) {
        volumes[v["name"].as<std::string>()] = static_cast<const YAML::Node&>(v);
    }
    CHECK(volumes["xtables-lock"]["hostPath"]["path"].as<std::string>() == "/run/xtables.lock");
    CHECK(volumes["xtables-lock"]["hostPath"]["type"].as<std::string>() == "FileOrCreate");
    CHECK(volumes["lib-modules"]["hostPath"]["path"].as<std::string>() == "/lib/modules");
    CHECK(volumes["kube-ipvs"]["configMap"]["name"].as<std::string>() == "kube-ipvs");

    // Only the short-lived init container is privileged, and it only initialises.
    const auto init = container(spec["initContainers"], "init-sysctls");
    CHECK(init["securityContext"]["privileged"].as<bool>());
    const auto cmd = strings(init["command"]);
    CHECK(std::find(cmd.begin(), cmd.end(), "--init-only") != cmd.end());
}

TEST_CASE("kube-ipvs accepts exactly the arguments and config the manifests pass", "[manifests]") {
    const MountedConfig mounted;
    const auto spec = daemonSet()["spec"]["template"]["spec"];
    for (const auto* name : {"kube-ipvs", "init-sysctls"}) {
        INFO(name);
        const auto list =
            std::string(name) == "kube-ipvs" ? spec["containers"] : spec["initContainers"];
        const auto cmd = strings(container(list, name)["command"]);
        REQUIRE(cmd.front() == "/usr/local/bin/kube-ipvs");
        std::vector<std::string> args;
        for (std::size_t i = 1; i < cmd.size(); ++i) {
            args.push_back(mounted.rewrite(cmd[i]));
        }
        auto cfg = proxy::parseCommandLine(args);
        INFO((cfg ? std::string("ok") : cfg.error().message));
        REQUIRE(cfg.has_value());
        CHECK(cfg->mode == "ipvs");
        CHECK(cfg->warnings.empty());
        if (std::string(name) == "kube-ipvs") {
            CHECK(cfg->hostnameOverride == "node-1");
            CHECK(cfg->clientConnection.kubeconfig == "/var/lib/kube-ipvs/kubeconfig.conf");
            CHECK(cfg->healthzBindAddress == "0.0.0.0:10256");
            // The kubeconfig the config points at loads (the service-account files it names
            // exist only in a pod, so they are supplied here).
            auto kc = k8s::parseKubeconfig(
                [&] {
                    std::ifstream f(mounted.rewrite(cfg->clientConnection.kubeconfig));
                    std::stringstream ss;
                    ss << f.rdbuf();
                    return ss.str();
                }(),
                cfg->clientConnection.kubeconfig, "",
                [](const std::string& path) {
                    return Result<std::string>(std::string("file ") + path);
                });
            INFO((kc ? std::string("ok") : kc.error().message));
            REQUIRE(kc.has_value());
            CHECK(kc->tokenFile == "/var/run/secrets/kubernetes.io/serviceaccount/token");
            CHECK(kc->server.tls);
        } else {
            CHECK(cfg->initOnly);
        }
    }

    // The binary itself, not just the library: it parses and validates the same command
    // line (with --write-config-to so it stops before touching the kernel).
    const char* bin = std::getenv("KUBE_IPVS_BINARY");
    REQUIRE(bin != nullptr);
    std::string line = bin;
    const auto cmd = strings(container(spec["containers"], "kube-ipvs")["command"]);
    for (std::size_t i = 1; i < cmd.size(); ++i) {
        line += " '" + mounted.rewrite(cmd[i]) + "'";
    }
    line += " --write-config-to=" + mounted.root + "/effective.yaml 2>&1";
    FILE* p = popen(line.c_str(), "r");
    REQUIRE(p != nullptr);
    char buf[4096];
    std::string out;
    while (std::fgets(buf, sizeof buf, p) != nullptr) {
        out += buf;
    }
    const int status = pclose(p);
    INFO(line << "\n" << out);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    std::ifstream effective(mounted.root + "/effective.yaml");
    std::stringstream ss;
    ss << effective.rdbuf();
    CHECK(ss.str().find("mode: ipvs") != std::string::npos);
}
