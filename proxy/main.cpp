// kube-ipvs: a node-level Kubernetes service proxy that programs Linux IPVS.
#include <cstdio>
#include <cstring>

#include "proxy/version.h"

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--version") == 0) {
            std::printf("kube-ipvs %s\n", kipvs::kVersion);
            return 0;
        }
    }
    std::fprintf(stderr,
                 "kube-ipvs %s: the proxy daemon is not assembled yet; only --version works\n",
                 kipvs::kVersion);
    return 2;
}
