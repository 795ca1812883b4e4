// NetlinkIpvs against the guest's kernel, each result checked with ipvsadm, the tool an
// operator would use, whose output is captured and compared.
//
// Every test case runs in a fresh network namespace (IPVS tables are per namespace), with a
// dummy uplink and default routes so that IPVS accepts masquerade real servers. Namespaces are
// never deleted: tearing down one with a big IPVS table stalls IPVS for everyone (see
// kernel-test-vm.md), so the old ones are kept open until the process ends.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ipvs/netlink_ipvs.h"
#include "ipvs/writer_gate.h"

using namespace kipvs;
using namespace kipvs::ipvs;
using kipvs::net::Family;
using kipvs::net::IpAddress;

namespace {

std::string capture(const std::string& cmd, int* status = nullptr) {
    std::string out;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    REQUIRE(p != nullptr);
    std::array<char, 65536> buf{};
    std::size_t n = 0;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) {
        out.append(buf.data(), n);
    }
    const int st = pclose(p);
    if (status != nullptr) {
        *status = st;
    }
    return out;
}

void sh(const std::string& cmd) {
    int st = 0;
    const std::string out = capture(cmd, &st);
    INFO(cmd << "\n" << out);
    REQUIRE(st == 0);
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    std::string l;
    while (std::getline(in, l)) {
        if (!l.empty()) {
            out.push_back(l);
        }
    }
    return out;
}

// `ipvsadm -S -n`, sorted: the rule lines of the table, independent of hash order.
std::vector<std::string> saved() {
    auto l = lines(capture("ipvsadm -S -n"));
    std::sort(l.begin(), l.end());
    return l;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

// Switches this process into a new network namespace with an uplink and default routes.
// The previous namespace is kept alive by an open descriptor (see the file comment).
void freshNetns() {
    static std::vector<int> keep;  // test-process bookkeeping, not library state
    const int fd = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    keep.push_back(fd);
    REQUIRE(unshare(CLONE_NEWNET) == 0);
    sh("ip link set lo up");
    sh("ip link add uplink type dummy");
    sh("ip link set uplink up");
    sh("ip addr add 10.255.255.1/32 dev uplink");
    sh("ip -6 addr add fd00:ffff::1/128 dev uplink nodad");
    sh("ip route add default dev uplink");
    sh("ip -6 route add default dev uplink");
}

std::unique_ptr<NetlinkIpvs> openIpvs(const NetlinkIpvs::Options& o = {}) {
    auto r = NetlinkIpvs::open(o);
    INFO((r ? std::string("ok") : r.error().message));
    REQUIRE(r.has_value());
    return std::move(*r);
}

IpAddress ip(const char* s) {
    auto a = IpAddress::parse(s);
    REQUIRE(a);
    return *a;
}

VirtualServer vs(const char* addr, std::uint16_t port, Protocol p, const char* sched = "rr") {
    VirtualServer v;
    v.key.address = ip(addr);
    v.key.port = port;
    v.key.protocol = p;
    v.scheduler = *ShortName::make(sched);
    v.netmask = v.key.address.isV4() ? 0xffffffff : 128;
    return v;
}

VirtualServer fwmarkVs(std::uint32_t mark, Family f, const char* sched = "rr") {
    VirtualServer v;
    v.key.address = IpAddress::any(f);
    v.key.fwmark = mark;
    v.scheduler = *ShortName::make(sched);
    v.netmask = f == Family::V4 ? 0xffffffff : 128;
    return v;
}

RealServer rs(const char* addr, std::uint16_t port, Forwarding f = Forwarding::Masq, int w = 1) {
    RealServer r;
    r.key.address = ip(addr);
    r.key.port = port;
    r.forwarding = f;
    r.weight = w;
    return r;
}

std::string outcomes(const std::vector<OpResult>& results) {
    std::string s;
    for (const auto& r : results) {
        switch (r.outcome) {
            case Outcome::Done:
                s += 'D';
                break;
            case Outcome::Converted:
                s += 'C';
                break;
            case Outcome::Absent:
                s += 'A';
                break;
            case Outcome::Failed:
                s += 'F';
                break;
        }
    }
    return s;
}

void requireAllSucceeded(const std::vector<OpResult>& results) {
    for (std::size_t i = 0; i < results.size(); ++i) {
        INFO("op " << i << ": " << results[i].message);
        REQUIRE(results[i].succeeded());
    }
}

}  // namespace

TEST_CASE("info and timeouts agree with ipvsadm; zero keeps a timeout", "[kernel][ipvs]") {
    freshNetns();
    auto ipvs = openIpvs();
    auto info = ipvs->info();
    REQUIRE(info.has_value());
    const std::string listing = capture("ipvsadm -Ln");
    INFO(listing);
    CHECK(listing.find("IP Virtual Server version " + info->versionString() +
                       " (size=" + std::to_string(info->connTableSize) + ")") != std::string::npos);

    auto t = ipvs->timeouts();
    REQUIRE(t.has_value());
    auto shown = [] { return capture("ipvsadm -Ln --timeout"); };
    CHECK(shown() == "Timeout (tcp tcpfin udp): " + std::to_string(t->tcp) + " " +
                         std::to_string(t->tcpFin) + " " + std::to_string(t->udp) + "\n");

    REQUIRE(ipvs->setTimeouts(Timeouts{0, 33, 0}).has_value());
    CHECK(shown() == "Timeout (tcp tcpfin udp): " + std::to_string(t->tcp) + " 33 " +
                         std::to_string(t->udp) + "\n");
    REQUIRE(ipvs->setTimeouts(Timeouts{1234, 0, 77}).has_value());
    CHECK(shown() == "Timeout (tcp tcpfin udp): 1234 33 77\n");
    auto back = ipvs->timeouts();
    REQUIRE(back.has_value());
    CHECK(*back == Timeouts{1234, 33, 77});
}

TEST_CASE("every kind of service and dest is written, read back and removed", "[kernel][ipvs]") {
    freshNetns();
    auto ipvs = openIpvs();

    auto persistent = vs("10.96.0.11", 443, Protocol::TCP, "wrr");
    persistent.flags = kSvcFlagPersistent;
    persistent.timeout = 10800;
    persistent.netmask = 0xffffff00;
    auto mh = vs("10.96.0.12", 80, Protocol::TCP, "mh");
    mh.flags = kSvcFlagSched1 | kSvcFlagSched2;
    const auto udp = vs("10.96.0.10", 53, Protocol::UDP);
    const auto sctp = vs("10.96.0.13", 3868, Protocol::SCTP, "lc");
    auto v6 = vs("fd00::a", 8080, Protocol::TCP, "sh");
    v6.flags = kSvcFlagPersistent | kSvcFlagSched2;
    v6.timeout = 60;
    v6.netmask = 64;
    const auto fwm = fwmarkVs(7, Family::V4, "wlc");
    const auto fwm6 = fwmarkVs(8, Family::V6);

    auto thresholds = rs("10.244.1.9", 8443, Forwarding::Masq, 5);
    thresholds.upperThreshold = 100;
    thresholds.lowerThreshold = 10;
    const std::vector<Op> ops = {
        Op::addService(udp),
        Op::addService(persistent),
        Op::addService(mh),
        Op::addService(sctp),
        Op::addService(v6),
        Op::addService(fwm),
        Op::addService(fwm6),
        Op::addDest(udp.key, rs("10.244.1.7", 53)),
        Op::addDest(udp.key, rs("10.244.2.7", 53, Forwarding::Masq, 3)),
        Op::addDest(persistent.key, thresholds),
        Op::addDest(mh.key, rs("10.244.1.10", 80, Forwarding::Route, 2)),
        Op::addDest(mh.key, rs("10.244.1.11", 80, Forwarding::Tunnel, 0)),
        Op::addDest(sctp.key, rs("10.244.1.12", 3868)),
        Op::addDest(v6.key, rs("fd00:244::7", 8080)),
        Op::addDest(v6.key, rs("fd00:244::8", 8081, Forwarding::Route, 4)),
        Op::addDest(fwm.key, rs("10.244.1.13", 0, Forwarding::Route, 1)),
        Op::addDest(fwm6.key, rs("fd00:244::9", 0, Forwarding::Tunnel, 1)),
    };
    const auto results = ipvs->apply(ops);
    REQUIRE(results.size() == ops.size());
    CHECK(outcomes(results) == std::string(ops.size(), 'D'));
    requireAllSucceeded(results);

    const std::vector<std::string> expect = {
        "-A -t 10.96.0.11:443 -s wrr -p 10800 -M 255.255.255.0",
        // ipvsadm -S leaves thresholds out; they are checked with --thresholds below.
        "-a -t 10.96.0.11:443 -r 10.244.1.9:8443 -m -w 5",
        "-A -t 10.96.0.12:80 -s mh -b mh-fallback,mh-port",
        "-a -t 10.96.0.12:80 -r 10.244.1.10:80 -g -w 2",
        "-a -t 10.96.0.12:80 -r 10.244.1.11:80 -i -w 0 --tun-type ipip",
        "-A -u 10.96.0.10:53 -s rr",
        "-a -u 10.96.0.10:53 -r 10.244.1.7:53 -m -w 1",
        "-a -u 10.96.0.10:53 -r 10.244.2.7:53 -m -w 3",
        "-A --sctp-service 10.96.0.13:3868 -s lc",
        "-a --sctp-service 10.96.0.13:3868 -r 10.244.1.12:3868 -m -w 1",
        "-A -t [fd00::a]:8080 -s sh -p 60 -M 64 -b sh-port",
        "-a -t [fd00::a]:8080 -r [fd00:244::7]:8080 -m -w 1",
        "-a -t [fd00::a]:8080 -r [fd00:244::8]:8081 -g -w 4",
        "-A -f 7 -s wlc",
        "-a -f 7 -r 10.244.1.13:0 -g -w 1",
        "-A -f 8 -6 -s rr",
        "-a -f 8 -6 -r [fd00:244::9]:0 -i -w 1 --tun-type ipip",
    };
    CHECK(saved() == sorted(expect));
    const auto thresholdLines = lines(capture("ipvsadm -Ln --thresholds"));
    CHECK(std::count_if(thresholdLines.begin(), thresholdLines.end(), [](const std::string& l) {
              std::istringstream in(l);
              std::string arrow, addr, upper, lower;
              in >> arrow >> addr >> upper >> lower;
              return arrow == "->" && addr == "10.244.1.9:8443" && upper == "100" && lower == "10";
          }) == 1);

    // The library reads back exactly what it wrote.
    auto all = ipvs->services();
    REQUIRE(all.has_value());
    std::map<ServiceKey, VirtualServer> byKey;
    for (const auto& e : *all) {
        byKey[e.service.key] = e.service;
    }
    CHECK(byKey.size() == 7);
    for (const VirtualServer* v :
         std::vector<const VirtualServer*>{&udp, &persistent, &mh, &sctp, &v6, &fwm, &fwm6}) {
        INFO(v->toString());
        REQUIRE(byKey.count(v->key) == 1);
        CHECK(byKey[v->key] == *v);
        auto one = ipvs->service(v->key);
        REQUIRE(one.has_value());
        REQUIRE(one->has_value());
        CHECK((*one)->service == *v);
    }
    auto d = ipvs->dests(persistent.key);
    REQUIRE(d.has_value());
    REQUIRE(d->size() == 1);
    CHECK(d->front().dest == thresholds);
    d = ipvs->dests(v6.key);
    REQUIRE(d.has_value());
    REQUIRE(d->size() == 2);
    std::set<std::string> v6dests;
    for (const auto& e : *d) {
        v6dests.insert(e.dest.key.toString() + " " +
                       std::string(forwardingName(e.dest.forwarding)) + " " +
                       std::to_string(e.dest.weight));
    }
    CHECK(v6dests ==
          std::set<std::string>{"[fd00:244::7]:8080 Masq 1", "[fd00:244::8]:8081 Route 4"});

    // walk() sees the same services with the same dests.
    std::size_t walked = 0;
    std::size_t walkedDests = 0;
    REQUIRE(ipvs->walk([&](const ServiceEntry& s, std::span<const DestEntry> ds) {
                    ++walked;
                    walkedDests += ds.size();
                    CHECK(byKey.count(s.service.key) == 1);
                })
                .has_value());
    CHECK(walked == 7);
    CHECK(walkedDests == 10);

    // Missing objects: nullopt for a service, ESRCH for its dests.
    const auto missing = vs("10.96.9.9", 9, Protocol::TCP);
    auto none = ipvs->service(missing.key);
    REQUIRE(none.has_value());
    CHECK_FALSE(none->has_value());
    auto noDests = ipvs->dests(missing.key);
    REQUIRE_FALSE(noDests.has_value());
    CHECK(noDests.error().code.value() == ESRCH);

    // Updates in place: scheduler, flags, timeout, weight, thresholds, forwarding.
    auto persistent2 = persistent;
    persistent2.scheduler = *ShortName::make("rr");
    persistent2.flags = 0;
    persistent2.timeout = 0;
    persistent2.netmask = 0xffffffff;
    auto thresholds2 = thresholds;
    thresholds2.weight = 9;
    thresholds2.upperThreshold = 0;
    thresholds2.lowerThreshold = 0;
    auto mh2 = mh;
    mh2.flags = kSvcFlagSched2;  // kube-proxy's mh: mh-port only
    const auto updates = ipvs->apply(std::vector<Op>{
        Op::updateService(persistent2),
        Op::updateDest(persistent2.key, thresholds2),
        Op::updateService(mh2),
        Op::updateDest(mh.key, rs("10.244.1.11", 80, Forwarding::Masq, 7)),
    });
    CHECK(outcomes(updates) == "DDDD");
    auto after = saved();
    CHECK(std::count(after.begin(), after.end(), "-A -t 10.96.0.11:443 -s rr") == 1);
    CHECK(std::count(after.begin(), after.end(),
                     "-a -t 10.96.0.11:443 -r 10.244.1.9:8443 -m -w 9") == 1);
    CHECK(std::count(after.begin(), after.end(), "-A -t 10.96.0.12:80 -s mh -b mh-port") == 1);
    CHECK(std::count(after.begin(), after.end(), "-a -t 10.96.0.12:80 -r 10.244.1.11:80 -m -w 7") ==
          1);
    const std::string listing = capture("ipvsadm -Ln");
    INFO(listing);
    CHECK(listing.find("TCP  10.96.0.12:80 mh (mh-port)") != std::string::npos);

    // Deletes.
    const auto dels = ipvs->apply(std::vector<Op>{
        Op::deleteDest(udp.key, {ip("10.244.2.7"), 53}),
        Op::deleteService(sctp.key),
        Op::deleteService(fwm6.key),
        Op::deleteDest(v6.key, {ip("fd00:244::8"), 8081}),
    });
    CHECK(outcomes(dels) == "DDDD");
    after = saved();
    CHECK(std::count(after.begin(), after.end(), "-a -u 10.96.0.10:53 -r 10.244.2.7:53 -m -w 3") ==
          0);
    CHECK(std::count(after.begin(), after.end(), "-a -u 10.96.0.10:53 -r 10.244.1.7:53 -m -w 1") ==
          1);
    CHECK(std::count(after.begin(), after.end(), "-A --sctp-service 10.96.0.13:3868 -s lc") == 0);
    CHECK(std::count(after.begin(), after.end(), "-A -f 8 -6 -s rr") == 0);
    CHECK(std::count(after.begin(), after.end(),
                     "-a -t [fd00::a]:8080 -r [fd00:244::8]:8081 -g -w 4") == 0);
    CHECK(after.size() == 11);

    REQUIRE(ipvs->flush().has_value());
    CHECK(saved().empty());
    auto empty = ipvs->services();
    REQUIRE(empty.has_value());
    CHECK(empty->empty());
}

TEST_CASE("one failing op in a batch fails alone, with a message naming it", "[kernel][ipvs]") {
    freshNetns();
    auto ipvs = openIpvs();
    const auto a = vs("10.96.0.10", 53, Protocol::UDP);
    const auto missing = vs("10.96.0.99", 53, Protocol::UDP);
    const auto badSched = vs("10.96.0.20", 80, Protocol::TCP, "nosuchsched");
    const auto results = ipvs->apply(std::vector<Op>{
        Op::addService(a),
        Op::addDest(a.key, rs("10.244.1.7", 53)),
        Op::addDest(missing.key, rs("10.244.1.7", 53)),  // no such virtual server
        Op::addDest(a.key, rs("10.244.1.8", 53)),
        Op::addService(badSched),  // no such scheduler
        Op::addDest(a.key, rs("10.244.1.9", 53)),
    });
    REQUIRE(results.size() == 6);
    CHECK(outcomes(results) == "DDFDFD");
    CHECK(results[2].error == ESRCH);
    CHECK(results[2].message == "add-dest 10.96.0.99:53/UDP -> 10.244.1.7:53: No such process");
    CHECK(results[4].error == ENOENT);
    CHECK(results[4].message.rfind("add-service 10.96.0.20:80/TCP: No such file or directory", 0) ==
          0);
    CHECK(saved() == sorted({
                         "-A -u 10.96.0.10:53 -s rr",
                         "-a -u 10.96.0.10:53 -r 10.244.1.7:53 -m -w 1",
                         "-a -u 10.96.0.10:53 -r 10.244.1.8:53 -m -w 1",
                         "-a -u 10.96.0.10:53 -r 10.244.1.9:53 -m -w 1",
                     }));
}

TEST_CASE(
    "add of an existing object updates it, update of a missing one adds it, delete of a "
    "missing one is done",
    "[kernel][ipvs]") {
    freshNetns();
    auto ipvs = openIpvs();
    const auto a = vs("10.96.0.10", 80, Protocol::TCP);
    REQUIRE(outcomes(ipvs->apply(std::vector<Op>{
                Op::addService(a),
                Op::addDest(a.key, rs("10.244.1.7", 80)),
                Op::addDest(a.key, rs("10.244.1.8", 80)),
            })) == "DDD");

    auto a2 = a;
    a2.scheduler = *ShortName::make("wrr");
    const auto c = vs("10.96.0.30", 80, Protocol::TCP, "lc");
    const auto d = vs("fd00::d", 443, Protocol::TCP);
    const auto gone = vs("10.96.0.40", 80, Protocol::TCP);
    const auto results = ipvs->apply(std::vector<Op>{
        Op::addService(a2),                                                // exists: updated
        Op::addDest(a.key, rs("10.244.1.7", 80, Forwarding::Masq, 5)),     // exists: updated
        Op::updateDest(a.key, rs("10.244.1.9", 80, Forwarding::Masq, 2)),  // missing: added
        Op::updateService(c),                                              // missing: added
        Op::deleteDest(a.key, {ip("10.244.1.99"), 80}),                    // missing dest: done
        Op::deleteService(gone.key),                                       // missing service: done
        Op::deleteDest(gone.key, {ip("10.244.1.7"), 80}),  // dest of a missing VS: done
        Op::updateService(d),                              // missing: added, and then
        Op::addDest(d.key, rs("fd00:244::1", 443)),        // its dest goes in after it
        Op::deleteDest(a.key, {ip("10.244.1.8"), 80}),     // plain delete
    });
    REQUIRE(results.size() == 10);
    CHECK(outcomes(results) == "CCCCAAACDD");
    for (const auto& r : results) {
        CHECK(r.message.empty());
    }
    CHECK(saved() == sorted({
                         "-A -t 10.96.0.10:80 -s wrr",
                         "-a -t 10.96.0.10:80 -r 10.244.1.7:80 -m -w 5",
                         "-a -t 10.96.0.10:80 -r 10.244.1.9:80 -m -w 2",
                         "-A -t 10.96.0.30:80 -s lc",
                         "-A -t [fd00::d]:443 -s rr",
                         "-a -t [fd00::d]:443 -r [fd00:244::1]:443 -m -w 1",
                     }));
    CHECK(ipvs->counters().followUps == 5);
}

TEST_CASE("lost acks are sent again and every op is reported once", "[kernel][ipvs]") {
    freshNetns();
    // A tiny receive buffer and a window far beyond it: most acks of each sendmsg() are lost.
    NetlinkIpvs::Options o;
    o.receiveBuffer = 4096;
    o.maxInFlight = 100000;
    auto ipvs = openIpvs(o);
    std::vector<Op> ops;
    std::vector<std::string> expect;
    for (int i = 0; i < 1000; ++i) {
        const std::string addr = "10.97." + std::to_string(i / 250) + "." + std::to_string(i % 250);
        const auto v = vs(addr.c_str(), 80, Protocol::TCP);
        ops.push_back(Op::addService(v));
        expect.push_back("-A -t " + addr + ":80 -s rr");
        for (int j = 1; j <= 3; ++j) {
            const std::string d = "10.245." + std::to_string(i / 250) + "." + std::to_string(j);
            ops.push_back(Op::addDest(v.key, rs(d.c_str(), static_cast<std::uint16_t>(8000 + i))));
            expect.push_back("-a -t " + addr + ":80 -r " + d + ":" + std::to_string(8000 + i) +
                             " -m -w 1");
        }
    }
    const auto results = ipvs->apply(ops);
    REQUIRE(results.size() == ops.size());
    requireAllSucceeded(results);
    const auto& c = ipvs->counters();
    INFO("overruns " << c.overruns << " resent " << c.resent << " window " << c.window << " rcvbuf "
                     << c.receiveBufferGranted);
    CHECK(c.overruns > 0);
    CHECK(c.resent > 0);
    CHECK(c.window < 100000);
    CHECK(saved() == sorted(expect));
    // Ops whose ack was lost ran twice: the second run found them done, so they are
    // Converted; nothing else is.
    const auto conv = static_cast<std::size_t>(
        std::count_if(results.begin(), results.end(),
                      [](const OpResult& r) { return r.outcome == Outcome::Converted; }));
    CHECK(conv <= c.resent);

    // Later batches open the window again, doubling it each time.
    const std::size_t shrunk = c.window;
    requireAllSucceeded(
        ipvs->apply(std::vector<Op>{Op::deleteDest(ops[0].service.key, ops[1].dest.key)}));
    CHECK(ipvs->counters().window == std::min<std::size_t>(2 * shrunk, 100000));
}

TEST_CASE("10,000 services with 10 dests each in one batch", "[kernel][ipvs][large]") {
    freshNetns();
    auto ipvs = openIpvs();
    std::vector<Op> ops;
    ops.reserve(110000);
    std::vector<std::string> expect;
    expect.reserve(110000);
    for (int i = 0; i < 10000; ++i) {
        const std::string addr =
            "10.100." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
        const auto v = vs(addr.c_str(), static_cast<std::uint16_t>(1000 + i % 7), Protocol::TCP);
        ops.push_back(Op::addService(v));
        expect.push_back("-A -t " + addr + ":" + std::to_string(1000 + i % 7) + " -s rr");
        for (int j = 0; j < 10; ++j) {
            const std::string d = "10.244." + std::to_string(j) + "." + std::to_string(i % 250 + 1);
            const auto port = static_cast<std::uint16_t>(8000 + i / 250);
            ops.push_back(Op::addDest(v.key, rs(d.c_str(), port, Forwarding::Masq, j + 1)));
            expect.push_back("-a -t " + addr + ":" + std::to_string(1000 + i % 7) + " -r " + d +
                             ":" + std::to_string(port) + " -m -w " + std::to_string(j + 1));
        }
    }
    const auto before = ipvs->counters();
    const auto results = ipvs->apply(ops);
    REQUIRE(results.size() == ops.size());
    CHECK(outcomes(results) == std::string(ops.size(), 'D'));
    const auto& c = ipvs->counters();
    INFO("sendmsg " << c.sendCalls - before.sendCalls << " recvmmsg "
                    << c.receiveCalls - before.receiveCalls << " window " << c.window);
    // Pipelined: far fewer system calls than requests.
    CHECK(c.sendCalls - before.sendCalls < 1000);
    CHECK(c.receiveCalls - before.receiveCalls < 5000);
    CHECK(saved() == sorted(expect));

    std::size_t services = 0;
    std::size_t dests = 0;
    bool weightsOk = true;
    REQUIRE(ipvs->walk([&](const ServiceEntry&, std::span<const DestEntry> ds) {
                    ++services;
                    dests += ds.size();
                    std::set<int> w;
                    for (const auto& d : ds) {
                        w.insert(d.dest.weight);
                    }
                    weightsOk = weightsOk && w.size() == 10 && *w.begin() == 1 && *w.rbegin() == 10;
                })
                .has_value());
    CHECK(services == 10000);
    CHECK(dests == 100000);
    CHECK(weightsOk);
    auto all = ipvs->services();
    REQUIRE(all.has_value());
    CHECK(all->size() == 10000);
}

TEST_CASE("a paced walk holds back while a writer is in, then reads everything", "[kernel][ipvs]") {
    // The verifier's read (Options::beforeReadStep with a WriterGate): no step of the dump
    // while a sync writes, so a sync's batch waits for one step at most.
    freshNetns();
    auto writer = openIpvs();
    std::vector<Op> ops;
    for (int i = 0; i < 2000; ++i) {
        const std::string addr =
            "10.101." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
        const auto v = vs(addr.c_str(), 80, Protocol::TCP);
        ops.push_back(Op::addService(v));
        ops.push_back(Op::addDest(v.key, rs("10.244.0.1", 8080)));
        ops.push_back(Op::addDest(v.key, rs("10.244.0.2", 8080)));
    }
    requireAllSucceeded(writer->apply(ops));

    ipvs::WriterGate gate(std::chrono::seconds(60));
    std::atomic<int> steps{0};
    NetlinkIpvs::Options o;
    o.beforeReadStep = [&] {
        ++steps;
        gate.awaitWriters();
    };
    auto reader = openIpvs(o);
    std::atomic<int> visited{0};
    std::atomic<int> dests{0};
    bool walked = false;
    gate.enter();
    std::thread walk([&] {
        walked = reader
                     ->walk([&](const ServiceEntry&, std::span<const DestEntry> ds) {
                         ++visited;
                         dests += static_cast<int>(ds.size());
                     })
                     .has_value();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    // Held at its first step: the dump was not even asked for.
    CHECK(visited.load() == 0);
    CHECK(steps.load() == 1);
    gate.leave();
    // Writes while the walk runs, each marked in the gate: the walk still reads every
    // virtual server once.
    for (int i = 0; i < 50; ++i) {
        const ipvs::WriterGate::Scope w(gate);
        const auto v = vs("10.101.0.1", 80, Protocol::TCP);
        requireAllSucceeded(writer->apply(
            std::vector<Op>{Op::addDest(v.key, rs("10.244.0.1", 8080, Forwarding::Masq, i + 1))}));
    }
    walk.join();
    CHECK(walked);
    CHECK(visited.load() == 2000);
    CHECK(dests.load() == 4000);
    // One step per dests dump, one for the request and one per datagram of the service dump.
    CHECK(steps.load() > 2000 + 2);
}

TEST_CASE("a filtered walk reads the real servers of the accepted virtual servers only",
          "[kernel][ipvs]") {
    // Start-up adoption: each family's proxier reads its own virtual servers' real servers.
    freshNetns();
    std::vector<Op> ops;
    for (int i = 0; i < 300; ++i) {
        const std::string addr = "10.102.0." + std::to_string(i % 250 + 1);
        const auto v = vs(addr.c_str(), static_cast<std::uint16_t>(80 + i / 250), Protocol::TCP);
        ops.push_back(Op::addService(v));
        ops.push_back(Op::addDest(v.key, rs("10.244.0.1", 8080)));
    }
    for (int i = 0; i < 20; ++i) {
        const std::string addr = "fd00:102::" + std::to_string(i + 1);
        const auto v = vs(addr.c_str(), 80, Protocol::TCP);
        ops.push_back(Op::addService(v));
        ops.push_back(Op::addDest(v.key, rs("fd00:244::1", 8080)));
        ops.push_back(Op::addDest(v.key, rs("fd00:244::2", 8080)));
    }
    auto ipvs = openIpvs();
    requireAllSucceeded(ipvs->apply(ops));
    int steps = 0;
    NetlinkIpvs::Options o;
    o.beforeReadStep = [&] { ++steps; };  // one per request, datagram and real servers dump
    auto reader = openIpvs(o);
    int visited = 0;
    int dests = 0;
    int offered = 0;
    auto r = reader->walk(
        [&](const ServiceEntry& e, std::span<const DestEntry> ds) {
            CHECK(e.service.key.family() == net::Family::V6);
            ++visited;
            dests += static_cast<int>(ds.size());
        },
        [&](const ServiceKey& k) {
            ++offered;
            return k.family() == net::Family::V6;
        });
    REQUIRE(r.has_value());
    CHECK(offered == 320);
    CHECK(visited == 20);
    CHECK(dests == 40);
    CHECK(steps < 20 + 20);  // 20 real servers dumps and a few for the virtual servers
}

TEST_CASE("counters after real traffic match ipvsadm --stats", "[kernel][ipvs][traffic]") {
    freshNetns();
    // A pod and a client, each in its own namespace on a veth pair to this (node) namespace;
    // the VIP lives on a dummy interface as kube-ipvs0 holds it.
    sh("ip netns add kipvs-pod");
    sh("ip netns add kipvs-client");
    sh("ip link add vpod type veth peer name eth0 netns kipvs-pod");
    sh("ip link add vcli type veth peer name eth0 netns kipvs-client");
    sh("ip addr add 10.244.1.1/24 dev vpod && ip link set vpod up");
    sh("ip addr add 192.168.77.1/24 dev vcli && ip link set vcli up");
    sh("ip -n kipvs-pod link set lo up && ip -n kipvs-pod addr add 10.244.1.7/24 dev eth0 && "
       "ip -n kipvs-pod link set eth0 up && ip -n kipvs-pod route add default via 10.244.1.1");
    sh("ip -n kipvs-client link set lo up && ip -n kipvs-client addr add 192.168.77.2/24 dev eth0 "
       "&& ip -n kipvs-client link set eth0 up && "
       "ip -n kipvs-client route add default via 192.168.77.1");
    sh("ip link add kipvs0 type dummy && ip addr add 10.96.0.10/32 dev kipvs0 && "
       "ip link set kipvs0 up");
    sh("echo 1 > /proc/sys/net/ipv4/ip_forward");

    auto ipvs = openIpvs();
    const auto v = vs("10.96.0.10", 80, Protocol::TCP);
    REQUIRE(outcomes(ipvs->apply(std::vector<Op>{
                Op::addService(v), Op::addDest(v.key, rs("10.244.1.7", 8080))})) == "DD");

    // The server says "ready" once it listens, then answers three connections and exits.
    const char* server =
        "import socket,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('10.244.1.7', 8080)); s.listen(8); print('ready', flush=True)\n"
        "for i in range(3):\n"
        "    c,_=s.accept(); d=b''\n"
        "    while not d.endswith(b'\\n'):\n"
        "        x=c.recv(100)\n"
        "        if not x: break\n"
        "        d+=x\n"
        "    c.sendall(b'pong '+d); c.close()\n";
    const char* client =
        "import socket\n"
        "for i in range(3):\n"
        "    c=socket.create_connection(('10.96.0.10', 80), timeout=30)\n"
        "    c.sendall(b'ping %d\\n' % i); c.shutdown(socket.SHUT_WR); d=b''\n"
        "    while True:\n"
        "        x=c.recv(100)\n"
        "        if not x: break\n"
        "        d+=x\n"
        "    print(d.decode().strip()); c.close()\n";
    FILE* srv =
        popen(("ip netns exec kipvs-pod /usr/bin/python3 -c \"" + std::string(server) + "\" 2>&1")
                  .c_str(),
              "r");
    REQUIRE(srv != nullptr);
    std::array<char, 256> line{};
    REQUIRE(fgets(line.data(), line.size(), srv) != nullptr);
    REQUIRE(std::string(line.data()) == "ready\n");
    int st = 0;
    const std::string replies = capture(
        "ip netns exec kipvs-client /usr/bin/python3 -c \"" + std::string(client) + "\"", &st);
    INFO(replies);
    CHECK(st == 0);
    CHECK(replies == "pong ping 0\npong ping 1\npong ping 2\n");
    CHECK(pclose(srv) == 0);

    // The kernel publishes counters through its rate estimator, which folds the per-CPU
    // counters in every 2 seconds, so a listing right after the traffic can be behind. Wait
    // (bounded) for the estimator to show all three connections.
    for (int i = 0; i < 100; ++i) {
        auto s = ipvs->services();
        REQUIRE(s.has_value());
        if (s->size() == 1 && s->front().stats.conns == 3) {
            break;
        }
        usleep(100 * 1000);
    }
    // Read ours between two identical ipvsadm listings, so that no late packet can make them
    // differ (the last ACKs may still be on their way when the client exits).
    std::string stats;
    std::vector<ServiceEntry> svc;
    std::vector<DestEntry> dst;
    for (int attempt = 0; attempt < 50; ++attempt) {
        const std::string first = capture("ipvsadm -Ln --stats --exact");
        auto s = ipvs->services();
        auto d = ipvs->dests(v.key);
        REQUIRE(s.has_value());
        REQUIRE(d.has_value());
        stats = capture("ipvsadm -Ln --stats --exact");
        svc = *s;
        dst = *d;
        if (stats == first) {
            break;
        }
    }
    INFO(stats);
    REQUIRE(svc.size() == 1);
    REQUIRE(dst.size() == 1);
    auto row = [](const Stats& s) {
        return std::to_string(s.conns) + " " + std::to_string(s.inPackets) + " " +
               std::to_string(s.outPackets) + " " + std::to_string(s.inBytes) + " " +
               std::to_string(s.outBytes);
    };
    // ipvsadm: "TCP  10.96.0.10:80  conns inpkts outpkts inbytes outbytes", then the dest.
    std::vector<std::string> rows;
    for (const auto& l : lines(stats)) {
        std::istringstream in(l);
        std::vector<std::string> tok;
        std::string t;
        while (in >> t) {
            tok.push_back(t);
        }
        if (tok.size() == 7 && tok[0] == "TCP") {
            rows.push_back(tok[2] + " " + tok[3] + " " + tok[4] + " " + tok[5] + " " + tok[6]);
        } else if (tok.size() == 7 && tok[0] == "->") {
            rows.push_back(tok[2] + " " + tok[3] + " " + tok[4] + " " + tok[5] + " " + tok[6]);
        }
    }
    REQUIRE(rows.size() == 2);
    CHECK(rows[0] == row(svc[0].stats));
    CHECK(rows[1] == row(dst[0].stats));
    CHECK(svc[0].stats.conns == 3);
    CHECK(dst[0].stats.conns == 3);
    // Each connection: at least SYN, ACK, data, FIN in; SYN-ACK, data, FIN out.
    CHECK(svc[0].stats.inPackets >= 12);
    CHECK(svc[0].stats.outPackets >= 9);
    CHECK(svc[0].stats.inBytes > 0);
    CHECK(svc[0].stats.outBytes > 0);
}

namespace {
// This process's NETLINK_GENERIC sockets in the current network namespace, by descriptor.
std::vector<int> genericNetlinkFds() {
    std::set<std::string> inodes;
    std::ifstream table("/proc/net/netlink");
    std::string line;
    std::getline(table, line);  // header: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    while (std::getline(table, line)) {
        std::istringstream in(line);
        std::string sk, eth, pid, groups, rmem, wmem, dump, locks, drops, inode;
        in >> sk >> eth >> pid >> groups >> rmem >> wmem >> dump >> locks >> drops >> inode;
        if (eth == "16") {  // NETLINK_GENERIC
            inodes.insert("socket:[" + inode + "]");
        }
    }
    std::vector<int> fds;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = std::filesystem::read_symlink(e.path(), ec);
        if (!ec && inodes.count(target.string()) != 0) {
            fds.push_back(std::stoi(e.path().filename().string()));
        }
    }
    return fds;
}
}  // namespace

// A transport failure resets the request socket; if the new one cannot be opened (here no
// descriptor is free), the next requests fail with that error, and a later one opens a socket
// again.
TEST_CASE("a socket that cannot be reopened after a failure is an error, then reopened",
          "[kernel][ipvs]") {
    freshNetns();
    auto ipvs = openIpvs();
    requireAllSucceeded(
        ipvs->apply(std::vector<Op>{Op::addService(vs("10.96.0.1", 80, Protocol::TCP))}));
    rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
    const int devNull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    REQUIRE(devNull >= 0);
    int replaced = 0;
    NetlinkIpvs::Options o;
    std::unique_ptr<NetlinkIpvs> victim;
    // Before the walk reads its first reply: both of its sockets become /dev/null, so the read
    // fails (ENOTSOCK), and no descriptor is free for a new socket.
    o.beforeReadStep = [&] {
        if (replaced++ != 1) {
            return;
        }
        for (const int fd : genericNetlinkFds()) {
            if (fd != devNull) {
                ::dup2(devNull, fd);
            }
        }
        rlimit low = saved;
        low.rlim_cur = 3;
        ::setrlimit(RLIMIT_NOFILE, &low);
    };
    victim = openIpvs(o);
    auto walked = victim->walk([](const ServiceEntry&, std::span<const DestEntry>) {});
    auto listed = victim->services();
    auto applied =
        victim->apply(std::vector<Op>{Op::addService(vs("10.96.0.2", 80, Protocol::TCP))});
    // Checked once descriptors are free again: under UBSan, Catch's expression objects are
    // checked by a runtime that needs a descriptor (a pipe) and reports them as bad without.
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK_FALSE(walked.has_value());
    REQUIRE(replaced >= 2);
    REQUIRE_FALSE(listed.has_value());
    // libnl reports socket()'s EMFILE as a failure of its own, without the errno.
    CHECK(listed.error().message.find("generic netlink connect") != std::string::npos);
    REQUIRE(applied.size() == 1);
    CHECK(applied[0].outcome == Outcome::Failed);
    CHECK(applied[0].error != 0);

    ::close(devNull);
    listed = victim->services();
    REQUIRE(listed.has_value());
    CHECK(listed->size() == 1);
}
