#include <catch2/catch.hpp>

#include "proxy/metrics.h"

using namespace kipvs::metrics;

TEST_CASE("registry renders counters, gauges and histograms in the text format", "[metrics]") {
    Registry r;
    r.counter("kubeproxy_sync_proxy_rules_iptables_restore_failures_total", "Restore failures",
              {{"ip_family", "IPv4"}})
        .inc(2);
    r.gauge("kube_ipvs_virtual_servers", "VSs", {{"ip_family", "IPv6"}}).set(7);
    auto& h = r.histogram("kubeproxy_sync_proxy_rules_duration_seconds", "Sync duration",
                          exponentialBuckets(0.001, 2, 15), {{"ip_family", "IPv4"}});
    h.observe(0.0015);
    h.observe(20);
    const auto text = r.render();
    INFO(text);
    CHECK(
        text.find(
            "# TYPE kubeproxy_sync_proxy_rules_iptables_restore_failures_total counter\n"
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total{ip_family=\"IPv4\"} 2\n") !=
        std::string::npos);
    CHECK(text.find("kube_ipvs_virtual_servers{ip_family=\"IPv6\"} 7\n") != std::string::npos);
    CHECK(text.find("kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0."
                    "001\"} 0\n") != std::string::npos);
    CHECK(text.find("kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"0."
                    "002\"} 1\n") != std::string::npos);
    CHECK(text.find("kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"16."
                    "384\"} 1\n") != std::string::npos);
    CHECK(text.find("kubeproxy_sync_proxy_rules_duration_seconds_bucket{ip_family=\"IPv4\",le=\"+"
                    "Inf\"} 2\n") != std::string::npos);
    CHECK(text.find("kubeproxy_sync_proxy_rules_duration_seconds_count{ip_family=\"IPv4\"} 2\n") !=
          std::string::npos);
    CHECK(r.value("kube_ipvs_virtual_servers", {{"ip_family", "IPv6"}}) == 7);
}

TEST_CASE("kube-proxy's network programming buckets", "[metrics]") {
    const auto b = networkProgrammingBuckets();
    REQUIRE(b.size() == 2 + 59 + 12 + 7);
    CHECK(b.front() == 0.25);
    CHECK(b[2] == 1);
    CHECK(b[60] == 59);
    CHECK(b[61] == 60);
    CHECK(b.back() == 300);
}

TEST_CASE("label values are escaped and per-object metrics can be removed", "[metrics]") {
    Registry r;
    r.gauge("kube_ipvs_service_connections", "c", {{"service", "a\"b\\c\nd"}}).set(1);
    r.gauge("kube_ipvs_service_connections", "c", {{"service", "keep"}}).set(2);
    CHECK(r.render().find(R"(service="a\"b\\c\nd")") != std::string::npos);
    r.removeMatching("kube_ipvs_service_connections", "service", "a\"b\\c\nd");
    CHECK(r.render().find("a\\\"b") == std::string::npos);
    CHECK(r.value("kube_ipvs_service_connections", {{"service", "keep"}}) == 2);
}
