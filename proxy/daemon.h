// The kube-ipvs daemon: wires the configuration, the kernel layer, the API client, the
// per-family reconcilers, the sync loop and the HTTP endpoints together on one io_context
// thread. main.cpp only parses flags and picks one of these.
#pragma once

#include "proxy/config.h"

namespace kipvs::proxy {

// Runs until SIGTERM/SIGINT (exit 0, rules left in place, as kube-proxy does) or a fatal
// error (exit 1). A second signal exits at once.
int runDaemon(const Config& cfg);

// --cleanup: removes every virtual server, address, set and rule kube-ipvs (or kube-proxy in
// ipvs mode) owns, in both families, and exits 0, or 1 if something could not be removed.
int runCleanup(const Config& cfg);

// --init-only: sets the sysctls, IPVS timeouts and conntrack limits, then exits.
int runInitOnly(const Config& cfg);

}  // namespace kipvs::proxy
