// API objects that are handled rather than rejected, because kube-proxy handles them: what
// is reported about them, and the one place that turns a report into a log line and a count.
//
// Rejected objects and dropped entries are the API client's business (k8s::Observer::onInvalid,
// kube_ipvs_rejected_objects_total). These are the objects that are used as they are, with
// something unusual in them:
//
//   reason label                       kind           found by    log
//   annotations_too_large              any            decoder     warning
//   many_ports                         Service        decoder     warning
//   duplicate_endpoint                 EndpointSlice  decoder     warning
//   duplicate_endpoint_across_slices   EndpointSlice  Proxier     V(2): transient while the
//                                                                 controller moves an endpoint
//   service_missing                    EndpointSlice  Proxier     V(2): kept, and used once the
//                                                                 Service appears
//
// Each is reported once per change of the object that has it (never per sync), so the count
// is of object changes, and a node with 40,000 Services logs nothing per sync. Services and
// slices come on two watches, so service_missing also counts a slice whose event overtook its
// Service's; kube_ipvs_endpointslices_without_service says how many wait now.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "ipvs/net.h"
#include "k8s-client/objects.h"
#include "proxy/metrics.h"

namespace kipvs::proxy {

inline constexpr std::string_view kAnomalyDuplicateAcrossSlices =
    "duplicate_endpoint_across_slices";
inline constexpr std::string_view kAnomalyServiceMissing = "service_missing";

struct Anomaly {
    std::string_view kind;  // "Service", "EndpointSlice", "Node"
    k8s::ObjectKey key;
    std::string_view reason;  // the label value, stable (table above)
    std::string field;        // e.g. "metadata.labels[kubernetes.io/service-name]"
    // Complete, naming the object: "EndpointSlice default/web-1: endpoints: ..."
    std::string message;
    int verbosity = 0;  // 0: a warning; n > 0: an info line at V(n)
};

// What the Proxier reports to (the daemon's AnomalyReporter; tests record).
class AnomalySink {
  public:
    virtual ~AnomalySink() = default;
    virtual void onAnomaly(const Anomaly& a) = 0;
    // How many of one family's EndpointSlices are kept while their Service does not exist
    // (known only once the Services have synced). Called when the number changes.
    virtual void onSlicesWithoutService(net::Family /*family*/, std::size_t /*n*/) {}
};

// Logs each anomaly and counts it in kube_ipvs_handled_anomalies_total{kind,reason}; keeps
// the gauge kube_ipvs_endpointslices_without_service{ip_family}.
class AnomalyReporter final : public AnomalySink {
  public:
    explicit AnomalyReporter(metrics::Registry& metrics) : metrics_(metrics) {}
    void onAnomaly(const Anomaly& a) override;
    void onSlicesWithoutService(net::Family family, std::size_t n) override;

  private:
    metrics::Registry& metrics_;
};

}  // namespace kipvs::proxy
