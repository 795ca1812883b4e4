#include "proxy/anomalies.h"

#include "proxy/log.h"

namespace kipvs::proxy {

void AnomalyReporter::onAnomaly(const Anomaly& a) {
    metrics_
        .counter("kube_ipvs_handled_anomalies_total",
                 "Changes of API objects used as kube-proxy uses them despite an anomaly",
                 {{"kind", std::string(a.kind)}, {"reason", std::string(a.reason)}})
        .inc();
    const log::Fields fields = {{"kind", a.kind},
                                {"object", a.key.toString()},
                                {"field", a.field},
                                {"anomaly", a.reason},
                                {"reason", a.message}};
    if (a.verbosity <= 0) {
        log::warning("Handled an unusual object as kube-proxy does", fields);
    } else {
        log::debug(a.verbosity, "Handled an unusual object as kube-proxy does", fields);
    }
}

void AnomalyReporter::onSlicesWithoutService(net::Family family, std::size_t n) {
    metrics_
        .gauge("kube_ipvs_endpointslices_without_service",
               "EndpointSlices kept while their Service does not exist",
               {{"ip_family", family == net::Family::V4 ? "IPv4" : "IPv6"}})
        .set(static_cast<double>(n));
}

}  // namespace kipvs::proxy
