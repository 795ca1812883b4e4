// The IPVS table, as the reconciler sees it.
//
// The real implementation (NetlinkIpvs, ipvs/netlink_ipvs.h) speaks generic netlink; unit
// tests use a stateful fake (tests/fakes). Calls are synchronous and not thread-safe: one
// instance per thread. Nothing here throws for anything the kernel can do.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "ipvs/error.h"
#include "ipvs/types.h"

namespace kipvs::ipvs {

class Ipvs {
  public:
    virtual ~Ipvs() = default;

    virtual Result<Info> info() = 0;
    virtual Result<Timeouts> timeouts() = 0;
    // Fields left 0 keep the kernel's value (as `ipvsadm --set`).
    virtual Result<void> setTimeouts(const Timeouts& t) = 0;

    // Every virtual server, with counters.
    virtual Result<std::vector<ServiceEntry>> services() = 0;
    // One virtual server, or nullopt if the kernel has none with this key.
    virtual Result<std::optional<ServiceEntry>> service(const ServiceKey& key) = 0;
    // The real servers of one virtual server. A missing virtual server is an error (ESRCH).
    virtual Result<std::vector<DestEntry>> dests(const ServiceKey& key) = 0;

    // Walks every virtual server and its real servers without building one big vector: `fn`
    // is called once per virtual server. This is what periodic verification and start-up
    // adoption use at 44,000 services.
    using ServiceVisitor =
        std::function<void(const ServiceEntry& service, std::span<const DestEntry> dests)>;
    Result<void> walk(const ServiceVisitor& fn) { return walk(fn, {}); }
    // The same for the virtual servers `want` accepts (all when it is empty): the others are
    // skipped as they arrive, their real servers never read (one request per virtual server,
    // the most of a walk's cost).
    using ServiceFilter = std::function<bool(const ServiceKey& key)>;
    virtual Result<void> walk(const ServiceVisitor& fn, const ServiceFilter& want) = 0;

    // Applies writes in order, pipelined: many requests per sendmsg(), acks matched by
    // sequence number. Returns exactly one result per op, in the same order. One failing op
    // does not stop or hide the others. An add of something that exists becomes an update,
    // an update of something missing becomes an add, a delete of something missing is done;
    // each is reported in its OpResult.
    virtual std::vector<OpResult> apply(std::span<const Op> ops) = 0;

    // Removes every virtual server (IPVS_CMD_FLUSH). Only for --cleanup and tests.
    virtual Result<void> flush() = 0;
};

}  // namespace kipvs::ipvs
