// bench-ipvs: the library's side of the IPVS benchmark (tests/bench/ipvs-bench.sh drives it
// inside the guest, one network namespace per method).
//
//   bench-ipvs gen SERVICES DESTS FILE   write the same table as `ipvsadm -R` input
//   bench-ipvs batched SERVICES DESTS    program it with one apply() of every op
//   bench-ipvs single SERVICES DESTS     program it with one apply() per op
//   bench-ipvs walk                      read everything back with walk()
//   bench-ipvs restore FILE              program an `ipvsadm -S -n` dump (-A/-a lines, TCP/UDP/
//                                        SCTP, -s, -p, -m/-g/-i, -w) with one batched apply():
//                                        the minimal pipelined writer the scale benchmark
//                                        (tests/bench/scale/) compares the daemon with
//
// Each command prints `key=value` lines; `seconds` is measured around the library call only.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ipvs/netlink_ipvs.h"

using namespace kipvs;
using namespace kipvs::ipvs;

namespace {

// Service i: 10.100.(i/250).(i%250+1):(1000+i%7)/TCP, rr.
// Dest j of service i: 10.244.j.(i%250+1):(8000+i/250), masq, weight j+1.
std::string serviceAddr(int i) {
    return "10.100." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
}
int servicePort(int i) {
    return 1000 + i % 7;
}
std::string destAddr(int i, int j) {
    return "10.244." + std::to_string(j) + "." + std::to_string(i % 250 + 1);
}
int destPort(int i) {
    return 8000 + i / 250;
}

std::vector<Op> buildOps(int services, int dests) {
    std::vector<Op> ops;
    ops.reserve(static_cast<std::size_t>(services) * static_cast<std::size_t>(dests + 1));
    for (int i = 0; i < services; ++i) {
        VirtualServer vs;
        vs.key.address = *net::IpAddress::parse(serviceAddr(i));
        vs.key.port = static_cast<std::uint16_t>(servicePort(i));
        vs.key.protocol = Protocol::TCP;
        vs.scheduler = *ShortName::make("rr");
        ops.push_back(Op::addService(vs));
        for (int j = 0; j < dests; ++j) {
            RealServer rs;
            rs.key.address = *net::IpAddress::parse(destAddr(i, j));
            rs.key.port = static_cast<std::uint16_t>(destPort(i));
            rs.weight = j + 1;
            ops.push_back(Op::addDest(vs.key, rs));
        }
    }
    return ops;
}

double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::unique_ptr<NetlinkIpvs> openOrDie() {
    auto r = NetlinkIpvs::open();
    if (!r) {
        std::fprintf(stderr, "bench-ipvs: %s\n", r.error().message.c_str());
        std::exit(1);
    }
    return std::move(*r);
}

int gen(int services, int dests, const char* file) {
    std::ofstream out(file);
    for (int i = 0; i < services; ++i) {
        const std::string vip = serviceAddr(i) + ":" + std::to_string(servicePort(i));
        out << "-A -t " << vip << " -s rr\n";
        for (int j = 0; j < dests; ++j) {
            out << "-a -t " << vip << " -r " << destAddr(i, j) << ":" << destPort(i) << " -m -w "
                << j + 1 << "\n";
        }
    }
    return out.good() ? 0 : 1;
}

int program(int services, int dests, bool batched) {
    const auto ops = buildOps(services, dests);
    auto ipvs = openOrDie();
    std::size_t failed = 0;
    std::string firstFailure;
    const auto t0 = std::chrono::steady_clock::now();
    if (batched) {
        for (const auto& r : ipvs->apply(ops)) {
            if (!r.succeeded() && failed++ == 0) {
                firstFailure = r.message;
            }
        }
    } else {
        for (const auto& op : ops) {
            const auto r = ipvs->apply(std::span<const Op>(&op, 1));
            if (!r.front().succeeded() && failed++ == 0) {
                firstFailure = r.front().message;
            }
        }
    }
    const double secs = since(t0);
    const auto& c = ipvs->counters();
    std::printf("seconds=%.3f\nops=%zu\nfailed=%zu\nsendmsg=%llu\nrecvmmsg=%llu\nwindow=%zu\n",
                secs, ops.size(), failed, static_cast<unsigned long long>(c.sendCalls),
                static_cast<unsigned long long>(c.receiveCalls), c.window);
    if (failed != 0) {
        std::fprintf(stderr, "bench-ipvs: first failure: %s\n", firstFailure.c_str());
        return 1;
    }
    return 0;
}

// "10.96.0.1:80" or "[fd00::1]:80".
bool parseHostPort(const std::string& s, net::IpAddress& addr, std::uint16_t& port) {
    const auto colon = s.rfind(':');
    if (colon == std::string::npos) {
        return false;
    }
    std::string host = s.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    auto a = net::IpAddress::parse(host);
    if (!a) {
        return false;
    }
    addr = *a;
    port = static_cast<std::uint16_t>(std::atoi(s.c_str() + colon + 1));
    return true;
}

// One line of `ipvsadm -S -n` into an op; false for a line it does not understand.
bool parseRule(const std::string& line, std::vector<Op>& ops) {
    std::istringstream in(line);
    std::vector<std::string> f;
    for (std::string w; in >> w;) {
        f.push_back(w);
    }
    if (f.size() < 3 || (f[0] != "-A" && f[0] != "-a")) {
        return false;
    }
    ServiceKey key;
    if (f[1] == "-t") {
        key.protocol = Protocol::TCP;
    } else if (f[1] == "-u") {
        key.protocol = Protocol::UDP;
    } else if (f[1] == "--sctp-service") {
        key.protocol = Protocol::SCTP;
    } else {
        return false;
    }
    if (!parseHostPort(f[2], key.address, key.port)) {
        return false;
    }
    if (f[0] == "-A") {
        VirtualServer vs;
        vs.key = key;
        vs.scheduler = *ShortName::make("wlc");
        for (std::size_t i = 3; i + 1 < f.size(); ++i) {
            if (f[i] == "-s") {
                auto sched = ShortName::make(f[i + 1]);
                if (!sched) {
                    return false;
                }
                vs.scheduler = *sched;
            } else if (f[i] == "-p") {
                vs.flags |= kSvcFlagPersistent;
                vs.timeout = static_cast<std::uint32_t>(std::atoi(f[i + 1].c_str()));
            }
        }
        ops.push_back(Op::addService(vs));
        return true;
    }
    RealServer rs;
    for (std::size_t i = 3; i < f.size(); ++i) {
        if (f[i] == "-r" && i + 1 < f.size()) {
            if (!parseHostPort(f[i + 1], rs.key.address, rs.key.port)) {
                return false;
            }
        } else if (f[i] == "-w" && i + 1 < f.size()) {
            rs.weight = std::atoi(f[i + 1].c_str());
        } else if (f[i] == "-m") {
            rs.forwarding = Forwarding::Masq;
        } else if (f[i] == "-g") {
            rs.forwarding = Forwarding::Route;
        } else if (f[i] == "-i") {
            rs.forwarding = Forwarding::Tunnel;
        }
    }
    ops.push_back(Op::addDest(key, rs));
    return true;
}

int restore(const char* file) {
    std::ifstream in(file);
    if (!in) {
        std::fprintf(stderr, "bench-ipvs: cannot read %s\n", file);
        return 1;
    }
    // Parsing is outside the timed region: the writer is handed the table, as the daemon is.
    std::vector<Op> ops;
    std::size_t lineNo = 0;
    for (std::string line; std::getline(in, line);) {
        ++lineNo;
        if (!line.empty() && !parseRule(line, ops)) {
            std::fprintf(stderr, "bench-ipvs: %s:%zu: cannot parse: %s\n", file, lineNo,
                         line.c_str());
            return 1;
        }
    }
    auto ipvs = openOrDie();
    std::size_t failed = 0;
    std::string firstFailure;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& r : ipvs->apply(ops)) {
        if (!r.succeeded() && failed++ == 0) {
            firstFailure = r.message;
        }
    }
    const double secs = since(t0);
    const auto& c = ipvs->counters();
    std::printf("seconds=%.3f\nops=%zu\nfailed=%zu\nsendmsg=%llu\nrecvmmsg=%llu\n", secs,
                ops.size(), failed, static_cast<unsigned long long>(c.sendCalls),
                static_cast<unsigned long long>(c.receiveCalls));
    if (failed != 0) {
        std::fprintf(stderr, "bench-ipvs: first failure: %s\n", firstFailure.c_str());
        return 1;
    }
    return 0;
}

int walk() {
    auto ipvs = openOrDie();
    std::size_t services = 0;
    std::size_t dests = 0;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = ipvs->walk([&](const ServiceEntry&, std::span<const DestEntry> d) {
        ++services;
        dests += d.size();
    });
    const double secs = since(t0);
    if (!r) {
        std::fprintf(stderr, "bench-ipvs: walk: %s\n", r.error().message.c_str());
        return 1;
    }
    const auto& c = ipvs->counters();
    std::printf("seconds=%.3f\nservices=%zu\ndests=%zu\nsendmsg=%llu\nrecvmmsg=%llu\n", secs,
                services, dests, static_cast<unsigned long long>(c.sendCalls),
                static_cast<unsigned long long>(c.receiveCalls));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "gen" && argc == 5) {
        return gen(std::atoi(argv[2]), std::atoi(argv[3]), argv[4]);
    }
    if ((cmd == "batched" || cmd == "single") && argc == 4) {
        return program(std::atoi(argv[2]), std::atoi(argv[3]), cmd == "batched");
    }
    if (cmd == "walk" && argc == 2) {
        return walk();
    }
    if (cmd == "restore" && argc == 3) {
        return restore(argv[2]);
    }
    std::fprintf(stderr,
                 "usage: bench-ipvs gen SERVICES DESTS FILE | batched SERVICES DESTS |"
                 " single SERVICES DESTS | walk | restore FILE\n");
    return 2;
}
