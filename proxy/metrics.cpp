#include "proxy/metrics.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kipvs::metrics {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {
    std::sort(bounds_.begin(), bounds_.end());
}

void Histogram::observe(double v) {
    const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
    ++counts_[static_cast<std::size_t>(it - bounds_.begin())];
    ++count_;
    sum_ += v;
}

std::vector<std::uint64_t> Histogram::cumulative() const {
    std::vector<std::uint64_t> out(counts_.size());
    std::uint64_t acc = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        acc += counts_[i];
        out[i] = acc;
    }
    return out;
}

std::vector<double> exponentialBuckets(double start, double factor, int count) {
    std::vector<double> b;
    double v = start;
    for (int i = 0; i < count; ++i) {
        b.push_back(v);
        v *= factor;
    }
    return b;
}

std::vector<double> networkProgrammingBuckets() {
    std::vector<double> b = {0.25, 0.5};
    for (int i = 1; i < 60; ++i) {
        b.push_back(i);
    }
    for (int i = 60; i < 120; i += 5) {
        b.push_back(i);
    }
    for (int i = 120; i <= 300; i += 30) {
        b.push_back(i);
    }
    return b;
}

Registry::Family& Registry::family(const std::string& name, Type t, const std::string& help) {
    auto [it, inserted] = families_.try_emplace(name);
    if (inserted) {
        it->second.type = t;
        it->second.help = help;
    }
    assert(it->second.type == t && "metric registered twice with different types");
    return it->second;
}

Counter& Registry::counter(const std::string& name, const std::string& help, Labels labels) {
    auto& f = family(name, Type::Counter, help);
    auto& slot = f.counters[std::move(labels)];
    if (!slot) {
        slot = std::make_unique<Counter>();
    }
    return *slot;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, Labels labels) {
    auto& f = family(name, Type::Gauge, help);
    auto& slot = f.gauges[std::move(labels)];
    if (!slot) {
        slot = std::make_unique<Gauge>();
    }
    return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               const std::vector<double>& bounds, Labels labels) {
    auto& f = family(name, Type::Histogram, help);
    auto& slot = f.histograms[std::move(labels)];
    if (!slot) {
        slot = std::make_unique<Histogram>(bounds);
    }
    return *slot;
}

void Registry::removeMatching(const std::string& name, const std::string& label,
                              const std::string& value) {
    auto it = families_.find(name);
    if (it == families_.end()) {
        return;
    }
    auto matches = [&](const Labels& ls) {
        return std::any_of(ls.begin(), ls.end(),
                           [&](const auto& kv) { return kv.first == label && kv.second == value; });
    };
    std::erase_if(it->second.counters, [&](const auto& kv) { return matches(kv.first); });
    std::erase_if(it->second.gauges, [&](const auto& kv) { return matches(kv.first); });
    std::erase_if(it->second.histograms, [&](const auto& kv) { return matches(kv.first); });
}

double Registry::value(const std::string& name, const Labels& labels) const {
    auto it = families_.find(name);
    if (it == families_.end()) {
        return 0;
    }
    const auto& f = it->second;
    if (auto c = f.counters.find(labels); c != f.counters.end()) {
        return c->second->value();
    }
    if (auto g = f.gauges.find(labels); g != f.gauges.end()) {
        return g->second->value();
    }
    if (auto h = f.histograms.find(labels); h != f.histograms.end()) {
        return static_cast<double>(h->second->count());
    }
    return 0;
}

std::string escapeLabelValue(const std::string& v) {
    std::string out;
    out.reserve(v.size());
    for (const char c : v) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

namespace {

std::string formatValue(double v) {
    if (std::isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    if (std::isnan(v)) {
        return "NaN";
    }
    char buf[40];
    if (v == std::floor(v) && std::fabs(v) < 1e15) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
        return buf;
    }
    // The shortest form that reads back as the same double: 0.008, not 0.0080000000000000002.
    for (int precision = 15; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*g", precision, v);
        if (std::strtod(buf, nullptr) == v) {
            break;
        }
    }
    return buf;
}

std::string labelText(const Labels& labels, const char* extraKey = nullptr,
                      const std::string& extraValue = {}) {
    if (labels.empty() && extraKey == nullptr) {
        return {};
    }
    std::string s = "{";
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) {
            s += ',';
        }
        first = false;
        s += k + "=\"" + escapeLabelValue(v) + "\"";
    }
    if (extraKey != nullptr) {
        if (!first) {
            s += ',';
        }
        s += std::string(extraKey) + "=\"" + extraValue + "\"";
    }
    s += '}';
    return s;
}

}  // namespace

std::string Registry::render() const {
    std::string out;
    for (const auto& [name, f] : families_) {
        if (f.counters.empty() && f.gauges.empty() && f.histograms.empty()) {
            continue;
        }
        const char* type = f.type == Type::Counter ? "counter"
                           : f.type == Type::Gauge ? "gauge"
                                                   : "histogram";
        out += "# HELP " + name + " " + f.help + "\n";
        out += "# TYPE " + name + " " + type + "\n";
        for (const auto& [labels, c] : f.counters) {
            out += name + labelText(labels) + " " + formatValue(c->value()) + "\n";
        }
        for (const auto& [labels, g] : f.gauges) {
            out += name + labelText(labels) + " " + formatValue(g->value()) + "\n";
        }
        for (const auto& [labels, h] : f.histograms) {
            const auto cum = h->cumulative();
            for (std::size_t i = 0; i < h->bounds().size(); ++i) {
                out += name + "_bucket" + labelText(labels, "le", formatValue(h->bounds()[i])) +
                       " " + std::to_string(cum[i]) + "\n";
            }
            out += name + "_bucket" + labelText(labels, "le", "+Inf") + " " +
                   std::to_string(cum.back()) + "\n";
            out += name + "_sum" + labelText(labels) + " " + formatValue(h->sum()) + "\n";
            out += name + "_count" + labelText(labels) + " " + std::to_string(h->count()) + "\n";
        }
    }
    return out;
}

}  // namespace kipvs::metrics
