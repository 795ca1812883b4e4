// Ipvs over generic netlink (libnl-3 for the socket and the family lookup, ipvs_codec for the
// messages).
//
// Writes are pipelined: apply() packs many requests into each sendmsg(), each with NLM_F_ACK,
// and reads the acks back many per recvmmsg(), matched to ops by sequence number. The kernel
// handles a whole sendmsg() before it returns, queueing one ack per request on our socket, so
// the number of requests per sendmsg() is bounded by what the receive buffer can hold. If acks
// are lost anyway (ENOBUFS), the ops they belonged to are sent again with a smaller window: the
// write rules (add of an existing object updates it, delete of a missing one is done) make
// that safe. Each later apply() doubles the window back towards where it started, so that one
// burst of lost acks does not leave every later batch at one request per round trip.
//
// Not thread-safe; one instance per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "ipvs/error.h"
#include "ipvs/ipvs.h"

namespace kipvs::ipvs {

class NetlinkIpvs final : public Ipvs {
  public:
    struct Options {
        // Socket buffer sizes asked for. As root they are forced past net.core.{r,w}mem_max;
        // otherwise the kernel caps them there.
        int receiveBuffer = 64 << 20;
        int sendBuffer = 8 << 20;
        // Most requests in flight (sent, not yet acked). 0 derives it from the receive buffer
        // the kernel granted; tests set it too high on purpose to provoke lost acks.
        std::size_t maxInFlight = 0;
        // Most bytes of requests packed into one sendmsg() (also capped by the send buffer).
        std::size_t sendChunk = 1 << 20;
        // A receive that waits longer than this fails with ETIMEDOUT instead of hanging.
        int receiveTimeoutSeconds = 120;
        // walk() calls this before each step that makes the kernel take its IPVS mutex (the
        // service dump's request and each of its datagrams, each dests dump); a reader in the
        // background waits there while a writer works (WriterGate). Empty: no pauses.
        std::function<void()> beforeReadStep;
    };

    // What the socket layer did, for tests and the benchmark.
    struct IoCounters {
        std::uint64_t sendCalls = 0;
        std::uint64_t receiveCalls = 0;
        std::uint64_t requests = 0;    // requests sent by apply(), re-sends included
        std::uint64_t resent = 0;      // requests sent again after their ack was lost
        std::uint64_t overruns = 0;    // ENOBUFS seen on receive
        std::uint64_t followUps = 0;   // conversions (add<->update) sent
        std::size_t window = 0;        // current in-flight limit
        int receiveBufferGranted = 0;  // SO_RCVBUF as the kernel reports it
    };

    static Result<std::unique_ptr<NetlinkIpvs>> open();
    static Result<std::unique_ptr<NetlinkIpvs>> open(const Options& options);

    NetlinkIpvs(const NetlinkIpvs&) = delete;
    NetlinkIpvs& operator=(const NetlinkIpvs&) = delete;
    ~NetlinkIpvs() override;

    Result<Info> info() override;
    Result<Timeouts> timeouts() override;
    Result<void> setTimeouts(const Timeouts& t) override;
    Result<std::vector<ServiceEntry>> services() override;
    Result<std::optional<ServiceEntry>> service(const ServiceKey& key) override;
    Result<std::vector<DestEntry>> dests(const ServiceKey& key) override;
    using Ipvs::walk;
    Result<void> walk(const ServiceVisitor& fn, const ServiceFilter& want) override;
    std::vector<OpResult> apply(std::span<const Op> ops) override;
    Result<void> flush() override;

    const IoCounters& counters() const { return counters_; }

    class Socket;  // one generic netlink socket bound to the IPVS family (netlink_ipvs.cpp)

  private:
    struct Item;  // one op on its way through apply()

    NetlinkIpvs(const Options& options, std::unique_ptr<Socket> main);

    // Sends `items` pipelined and stores each one's errno (0 for success) and extended-ack
    // text. Never fails as a whole: transport failures become the errno of the items hit.
    void exchange(std::span<const Op> ops, std::span<const Item> items, std::vector<int>& errs,
                  std::vector<std::string>& extacks);
    // Sends one request with NLM_F_ACK, built by `build(buf, header)`, and reads until its ack,
    // handing a data reply to `onData(message)`. The kernel's errno, if it refused, goes to
    // `kernelError`; a transport or decode failure resets the socket.
    template <class Build, class OnData>
    Result<void> request(const std::string& what, Build&& build, OnData&& onData,
                         int* kernelError = nullptr);
    // Replaces a socket whose stream may hold leftovers of an aborted exchange.
    Result<void> resetSocket(std::unique_ptr<Socket>& s);
    Result<Socket*> walkSocket();
    // The request socket, opened again if a reset could not reopen it (EMFILE, ENOMEM, or
    // ip_vs unloaded at that moment): an error then, never a null socket.
    Result<Socket*> mainSocket();

    Options options_;
    std::unique_ptr<Socket> main_;
    std::unique_ptr<Socket> walk_;  // dest dumps while main_ runs the service dump
    std::vector<std::uint8_t> sendBuf_;
    std::vector<DestEntry> destScratch_;
    IoCounters counters_;
    std::size_t fullWindow_ = 1;  // the window open() set
};

}  // namespace kipvs::ipvs
