// A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
// text exposition format (version 0.0.4).
//
// Everything runs on the daemon's one io_context thread (updates and scrapes alike), so there
// is no locking. Metric objects have stable addresses: look them up once, keep the reference.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kipvs::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
  public:
    void inc(double v = 1) { value_ += v; }
    double value() const { return value_; }

  private:
    double value_ = 0;
};

class Gauge {
  public:
    void set(double v) { value_ = v; }
    void add(double v) { value_ += v; }
    double value() const { return value_; }

  private:
    double value_ = 0;
};

class Histogram {
  public:
    explicit Histogram(std::vector<double> bounds);
    void observe(double v);
    const std::vector<double>& bounds() const { return bounds_; }
    // Cumulative counts per bound, then +Inf.
    std::vector<std::uint64_t> cumulative() const;
    std::uint64_t count() const { return count_; }
    double sum() const { return sum_; }

  private:
    std::vector<double> bounds_;
    std::vector<std::uint64_t> counts_;  // per bucket, non-cumulative; last is +Inf
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

// kube-proxy's buckets for sync_proxy_rules_duration_seconds: 0.001 * 2^k, 15 buckets.
std::vector<double> exponentialBuckets(double start, double factor, int count);
// kube-proxy's network_programming_duration_seconds buckets: 0.25, 0.5, 1..59 by 1,
// 60..115 by 5, 120..300 by 30.
std::vector<double> networkProgrammingBuckets();

class Registry {
  public:
    Registry() = default;
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    // Returns the metric of this name and label set, creating the family and the metric on
    // first use. Calling with a name already registered as another type is a programming
    // error (asserted).
    Counter& counter(const std::string& name, const std::string& help, Labels labels = {});
    Gauge& gauge(const std::string& name, const std::string& help, Labels labels = {});
    Histogram& histogram(const std::string& name, const std::string& help,
                         const std::vector<double>& bounds, Labels labels = {});

    // Removes every metric of a family whose labels include label=value (for per-Service
    // metrics of a deleted Service).
    void removeMatching(const std::string& name, const std::string& label,
                        const std::string& value);

    // Reads a value for tests and for /healthz logic; 0 when absent.
    double value(const std::string& name, const Labels& labels = {}) const;

    std::string render() const;

  private:
    enum class Type { Counter, Gauge, Histogram };
    struct Family {
        Type type;
        std::string help;
        std::map<Labels, std::unique_ptr<Counter>> counters;
        std::map<Labels, std::unique_ptr<Gauge>> gauges;
        std::map<Labels, std::unique_ptr<Histogram>> histograms;
    };
    Family& family(const std::string& name, Type t, const std::string& help);
    std::map<std::string, Family> families_;
};

// Escapes a label value for the text format (backslash, quote, newline).
std::string escapeLabelValue(const std::string& v);

}  // namespace kipvs::metrics
