#include "ipvs/netlink_ipvs.h"

#include <fcntl.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <netlink/errno.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <unordered_set>
#include <utility>

#include "ipvs/ipvs_codec.h"

namespace kipvs::ipvs {

namespace {

using codec::ByteSpan;

// Budget per queued ack in the receive buffer. An ack is a ~36-byte message, but the buffer
// is charged the skb's truesize (about 700-800 bytes on x86-64); twice that leaves room for
// error acks with extended-ack text.
constexpr std::size_t kAckBudget = 2048;
constexpr std::size_t kMaxWindow = 65536;
constexpr std::size_t kAckSlots = 256;
constexpr std::size_t kAckSlotSize = 2048;
// A dump datagram is at most 32 KiB (the kernel's cap on dump skbs); room for a few per call.
constexpr std::size_t kDumpSlots = 4;
constexpr std::size_t kDumpSlotSize = 64 << 10;
constexpr int kMaxTimeouts = 3;

struct NlSockDeleter {
    void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using NlSockPtr = std::unique_ptr<nl_sock, NlSockDeleter>;

// libnl reports its own error numbers; the kernel-facing ones map back to errno.
int libnlErrno(int nlerr) {
    switch (-nlerr < 0 ? nlerr : -nlerr) {
        case NLE_NOMEM:
            return ENOMEM;
        case NLE_PERM:
            return EPERM;
        case NLE_OBJ_NOTFOUND:
            return ENOENT;
        case NLE_PROTO_MISMATCH:
            return EPROTONOSUPPORT;
        case NLE_NOACCESS:
            return EACCES;
        case NLE_BAD_SOCK:
            return ENOTSOCK;
        default:
            return EIO;
    }
}

// Received datagrams, many per recvmmsg(): one fixed-size slot each.
class RecvSlots {
  public:
    RecvSlots(std::size_t count, std::size_t size)
        : size_(size), storage_(count * size), hdrs_(count), iovs_(count) {}

    void arm() {
        for (std::size_t i = 0; i < hdrs_.size(); ++i) {
            iovs_[i].iov_base = storage_.data() + i * size_;
            iovs_[i].iov_len = size_;
            hdrs_[i] = {};
            hdrs_[i].msg_hdr.msg_iov = &iovs_[i];
            hdrs_[i].msg_hdr.msg_iovlen = 1;
        }
    }
    mmsghdr* headers() { return hdrs_.data(); }
    unsigned count() const { return static_cast<unsigned>(hdrs_.size()); }
    ByteSpan datagram(std::size_t i) const {
        return {storage_.data() + i * size_, std::min<std::size_t>(hdrs_[i].msg_len, size_)};
    }
    bool truncated(std::size_t i) const { return (hdrs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }

  private:
    std::size_t size_;
    std::vector<std::uint8_t> storage_;
    std::vector<mmsghdr> hdrs_;
    std::vector<iovec> iovs_;
};

std::optional<OpKind> conversionFor(OpKind k, int err) {
    switch (k) {
        case OpKind::AddService:
            return err == EEXIST ? std::optional(OpKind::UpdateService) : std::nullopt;
        case OpKind::UpdateService:
            return err == ESRCH || err == ENOENT ? std::optional(OpKind::AddService) : std::nullopt;
        case OpKind::AddDest:
            return err == EEXIST ? std::optional(OpKind::UpdateDest) : std::nullopt;
        case OpKind::UpdateDest:
            // ESRCH would be the virtual server missing: adding the dest cannot help.
            return err == ENOENT ? std::optional(OpKind::AddDest) : std::nullopt;
        case OpKind::DeleteService:
        case OpKind::DeleteDest:
            break;
    }
    return std::nullopt;
}

bool isAbsent(OpKind k, int err) {
    if (k == OpKind::DeleteService) {
        return err == ESRCH || err == ENOENT;
    }
    // A dest whose virtual server is gone (ESRCH) is gone too.
    return k == OpKind::DeleteDest && (err == ENOENT || err == ESRCH);
}

bool isDestOp(OpKind k) {
    return k == OpKind::AddDest || k == OpKind::UpdateDest || k == OpKind::DeleteDest;
}

std::string withExtack(std::string what, const std::string& extack) {
    if (!extack.empty()) {
        what += " (" + extack + ")";
    }
    return what;
}

}  // namespace

// ---- Socket --------------------------------------------------------------------------------

class NetlinkIpvs::Socket {
  public:
    static Result<std::unique_ptr<Socket>> open(const Options& o, IoCounters& counters) {
        NlSockPtr sock(nl_socket_alloc());
        if (!sock) {
            return Error::sys(ENOMEM, "netlink socket");
        }
        if (const int e = genl_connect(sock.get()); e < 0) {
            return Error::sys(libnlErrno(e), "generic netlink connect");
        }
        const int fd = nl_socket_get_fd(sock.get());
        // libnl opens with SOCK_CLOEXEC where it can; make sure of it, since the daemon
        // runs iptables-restore and the like.
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
            return Error::sys(errno, "netlink socket close-on-exec");
        }
        const int family = genl_ctrl_resolve(sock.get(), IPVS_GENL_NAME);
        if (family < 0) {
            return Error::sys(libnlErrno(family), "resolve generic netlink family " IPVS_GENL_NAME
                                                  " (is ip_vs loaded?)");
        }
        auto s = std::unique_ptr<Socket>(
            new Socket(std::move(sock), fd, static_cast<std::uint16_t>(family), counters));
        s->sizeBuffer(SO_RCVBUFFORCE, SO_RCVBUF, o.receiveBuffer);
        s->sizeBuffer(SO_SNDBUFFORCE, SO_SNDBUF, o.sendBuffer);
        s->receiveBuffer_ = s->getInt(SOL_SOCKET, SO_RCVBUF);
        s->sendBuffer_ = s->getInt(SOL_SOCKET, SO_SNDBUF);
        // Small acks that do not echo the request, and the kernel's reason text on errors.
        // Kernels without them (before 4.3 / 4.12) just send bigger acks and no text.
        const int one = 1;
        (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
        (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
        timeval tv{};
        tv.tv_sec = o.receiveTimeoutSeconds;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
            return Error::sys(errno, "netlink socket receive timeout");
        }
        return s;
    }

    std::uint16_t family() const { return family_; }
    std::uint32_t nextSeq() { return seq_++; }
    std::uint32_t peekSeq() const { return seq_; }
    int receiveBuffer() const { return receiveBuffer_; }
    int sendBuffer() const { return sendBuffer_; }

    codec::RequestHeader header(std::uint16_t flags) {
        return codec::RequestHeader{family_, nextSeq(), flags};
    }

    // Returns 0 or the errno of a failed sendmsg().
    int send(ByteSpan bytes) {
        sockaddr_nl kernel{};
        kernel.nl_family = AF_NETLINK;
        for (;;) {
            ++counters_.sendCalls;
            const ssize_t n = ::sendto(fd_, bytes.data(), bytes.size(), 0,
                                       reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
            if (n >= 0) {
                return 0;
            }
            if (errno != EINTR) {
                return errno;
            }
        }
    }

    // Receives up to slots.count() datagrams. With `wait`, blocks for the first one (up to the
    // receive timeout: ETIMEDOUT); without, returns 0 when nothing is queued.
    // At most `max` datagrams per call: receiving a dump's datagram makes the kernel build the
    // next one at once, so a caller that paces a dump takes one at a time.
    Result<int> receive(RecvSlots& slots, bool wait, unsigned max = ~0U) {
        for (;;) {
            slots.arm();
            ++counters_.receiveCalls;
            const int n = ::recvmmsg(fd_, slots.headers(), std::min(slots.count(), max),
                                     wait ? MSG_WAITFORONE : MSG_DONTWAIT, nullptr);
            if (n >= 0) {
                return n;
            }
            const int e = errno;
            if (e == EINTR) {
                continue;
            }
            if (e == EAGAIN || e == EWOULDBLOCK) {
                if (!wait) {
                    return 0;
                }
                return Error::sys(ETIMEDOUT, "netlink receive");
            }
            return Error::sys(e, "netlink receive");
        }
    }

    RecvSlots& ackSlots() {
        if (!acks_) {
            acks_ = std::make_unique<RecvSlots>(kAckSlots, kAckSlotSize);
        }
        return *acks_;
    }
    RecvSlots& dumpSlots() {
        if (!dumps_) {
            dumps_ = std::make_unique<RecvSlots>(kDumpSlots, kDumpSlotSize);
        }
        return *dumps_;
    }

  private:
    Socket(NlSockPtr sock, int fd, std::uint16_t family, IoCounters& counters)
        : sock_(std::move(sock)), fd_(fd), family_(family), counters_(counters) {}

    void sizeBuffer(int force, int plain, int bytes) {
        // Forcing needs CAP_NET_ADMIN; without it the plain option is capped by the sysctl.
        if (setsockopt(fd_, SOL_SOCKET, force, &bytes, sizeof bytes) != 0) {
            (void)setsockopt(fd_, SOL_SOCKET, plain, &bytes, sizeof bytes);
        }
    }
    int getInt(int level, int opt) const {
        int v = 0;
        socklen_t len = sizeof v;
        return getsockopt(fd_, level, opt, &v, &len) == 0 ? v : 0;
    }

    NlSockPtr sock_;
    int fd_;
    std::uint16_t family_;
    // Sequence numbers are ours alone: after the family lookup libnl never reads this socket.
    std::uint32_t seq_ = 1;
    int receiveBuffer_ = 0;
    int sendBuffer_ = 0;
    IoCounters& counters_;
    std::unique_ptr<RecvSlots> acks_;
    std::unique_ptr<RecvSlots> dumps_;
};

// ---- Reading replies -----------------------------------------------------------------------

namespace {

// Reads the replies to requests already sent (`seqs`) until each has ended: its ack or error,
// or for a dump NLMSG_DONE or an error. Data messages go to `onData(index, message)`, which
// returns Result<void>; after its first failure reading goes on (without it) so that the
// socket is left with nothing of these requests queued. Kernel errors land in `kernelErr`.
// With `beforeStep`, datagrams are taken one per receive and it runs before each receive
// (Options::beforeReadStep).
template <class OnData>
Result<void> readReplies(NetlinkIpvs::Socket& s, std::span<const std::uint32_t> seqs,
                         std::span<int> kernelErr, std::span<std::string> extack, OnData&& onData,
                         const std::function<void()>& beforeStep = {}) {
    RecvSlots& slots = s.dumpSlots();
    std::size_t open = seqs.size();
    std::vector<bool> ended(seqs.size(), false);
    Result<void> failure = ok();
    while (open > 0) {
        if (beforeStep) {
            beforeStep();
        }
        auto n = s.receive(slots, true, beforeStep ? 1U : ~0U);
        if (!n) {
            return n.error();
        }
        for (int i = 0; i < *n; ++i) {
            if (slots.truncated(i)) {
                failure = Error::protocol("netlink datagram larger than the receive buffer");
                continue;
            }
            auto r = codec::forEachMessage(slots.datagram(i), [&](const codec::Message& m) {
                std::size_t j = 0;
                while (j < seqs.size() && seqs[j] != m.seq) {
                    ++j;
                }
                if (j == seqs.size() || ended[j]) {
                    return true;  // a leftover of something else: not ours
                }
                if (m.type == NLMSG_DONE || m.type == NLMSG_ERROR) {
                    if (m.type == NLMSG_DONE) {
                        auto e = codec::decodeDone(m.bytes);
                        kernelErr[j] = e ? *e : EPROTO;
                    } else if (auto ack = codec::decodeAck(m.bytes)) {
                        kernelErr[j] = ack->error;
                        extack[j] = std::move(ack->extack);
                    } else {
                        kernelErr[j] = EPROTO;
                    }
                    ended[j] = true;
                    --open;
                } else if (m.type >= NLMSG_MIN_TYPE && failure) {
                    if (auto r2 = onData(j, m); !r2) {
                        failure = r2.error();
                    }
                }
                return true;
            });
            if (!r && failure) {
                failure = r.error();
            }
        }
    }
    return failure;
}

}  // namespace

// ---- NetlinkIpvs ---------------------------------------------------------------------------

struct NetlinkIpvs::Item {
    std::size_t index = 0;  // into the ops of apply()
    OpKind kind = OpKind::AddService;
    bool converted = false;  // this is the follow-up of an add/update conversion
    bool deferred = false;   // re-sent once because an earlier op's follow-up creates its VS
};

Result<std::unique_ptr<NetlinkIpvs>> NetlinkIpvs::open() {
    return open(Options{});
}

Result<std::unique_ptr<NetlinkIpvs>> NetlinkIpvs::open(const Options& options) {
    auto self = std::unique_ptr<NetlinkIpvs>(new NetlinkIpvs(options, nullptr));
    auto s = Socket::open(options, self->counters_);
    if (!s) {
        return s.error();
    }
    self->main_ = std::move(*s);
    self->counters_.receiveBufferGranted = self->main_->receiveBuffer();
    std::size_t window = options.maxInFlight;
    if (window == 0) {
        window = static_cast<std::size_t>(std::max(self->main_->receiveBuffer(), 0)) / kAckBudget;
        window = std::clamp<std::size_t>(window, 1, kMaxWindow);
    }
    self->counters_.window = window;
    self->fullWindow_ = window;
    return self;
}

NetlinkIpvs::NetlinkIpvs(const Options& options, std::unique_ptr<Socket> main)
    : options_(options), main_(std::move(main)) {}

NetlinkIpvs::~NetlinkIpvs() = default;

Result<void> NetlinkIpvs::resetSocket(std::unique_ptr<Socket>& s) {
    s.reset();
    auto fresh = Socket::open(options_, counters_);
    if (!fresh) {
        return fresh.error();
    }
    s = std::move(*fresh);
    return ok();
}

Result<NetlinkIpvs::Socket*> NetlinkIpvs::mainSocket() {
    if (!main_) {
        if (auto r = resetSocket(main_); !r) {
            return r.error();
        }
    }
    return main_.get();
}

Result<NetlinkIpvs::Socket*> NetlinkIpvs::walkSocket() {
    if (!walk_) {
        if (auto r = resetSocket(walk_); !r) {
            return r.error();
        }
    }
    return walk_.get();
}

template <class Build, class OnData>
Result<void> NetlinkIpvs::request(const std::string& what, Build&& build, OnData&& onData,
                                  int* kernelError) {
    auto ms = mainSocket();
    if (!ms) {
        return ms.error().context(what);
    }
    Socket& s = **ms;
    sendBuf_.clear();
    const auto h = s.header(NLM_F_ACK);
    build(sendBuf_, h);
    if (const int e = s.send(sendBuf_); e != 0) {
        return Error::sys(e, what);
    }
    const std::uint32_t seqs[1] = {h.seq};
    int err[1] = {0};
    std::string extack[1];
    auto r = readReplies(s, seqs, err, extack,
                         [&](std::size_t, const codec::Message& m) { return onData(m); });
    if (!r) {
        (void)resetSocket(main_);
        return r.error().context(what);
    }
    if (kernelError != nullptr) {
        *kernelError = err[0];
    }
    if (err[0] != 0) {
        return Error::sys(err[0], withExtack(what, extack[0]));
    }
    return ok();
}

Result<Info> NetlinkIpvs::info() {
    std::optional<Info> info;
    auto r = request(
        "IPVS get-info", [](auto& buf, const auto& h) { codec::appendGetInfo(buf, h); },
        [&](const codec::Message& m) -> Result<void> {
            auto i = codec::decodeInfo(m.bytes);
            if (!i) {
                return i.error();
            }
            info = *i;
            return ok();
        });
    if (!r) {
        return r.error();
    }
    if (!info) {
        return Error::protocol("IPVS get-info: no reply");
    }
    return *info;
}

Result<Timeouts> NetlinkIpvs::timeouts() {
    std::optional<Timeouts> t;
    auto r = request(
        "IPVS get-config", [](auto& buf, const auto& h) { codec::appendGetConfig(buf, h); },
        [&](const codec::Message& m) -> Result<void> {
            auto c = codec::decodeConfig(m.bytes);
            if (!c) {
                return c.error();
            }
            t = *c;
            return ok();
        });
    if (!r) {
        return r.error();
    }
    if (!t) {
        return Error::protocol("IPVS get-config: no reply");
    }
    return *t;
}

Result<void> NetlinkIpvs::setTimeouts(const Timeouts& t) {
    if (t == Timeouts{}) {
        return ok();  // nothing to change; the kernel would accept an empty request too
    }
    return request(
        "IPVS set-config", [&](auto& buf, const auto& h) { codec::appendSetConfig(buf, h, t); },
        [](const codec::Message&) -> Result<void> { return ok(); });
}

Result<void> NetlinkIpvs::flush() {
    return request(
        "IPVS flush", [](auto& buf, const auto& h) { codec::appendFlush(buf, h); },
        [](const codec::Message&) -> Result<void> { return ok(); });
}

Result<std::optional<ServiceEntry>> NetlinkIpvs::service(const ServiceKey& key) {
    std::optional<ServiceEntry> found;
    int kernelErr = 0;
    auto r = request(
        "IPVS get-service " + key.toString(),
        [&](auto& buf, const auto& h) { codec::appendGetService(buf, h, key); },
        [&](const codec::Message& m) -> Result<void> {
            auto e = codec::decodeService(m.bytes);
            if (!e) {
                return e.error();
            }
            found = *e;
            return ok();
        },
        &kernelErr);
    if (!r) {
        if (kernelErr == ESRCH || kernelErr == ENOENT) {
            return std::optional<ServiceEntry>();
        }
        return r.error();
    }
    return found;
}

Result<std::vector<ServiceEntry>> NetlinkIpvs::services() {
    auto ms = mainSocket();
    if (!ms) {
        return ms.error().context("IPVS dump services");
    }
    Socket& s = **ms;
    std::vector<ServiceEntry> out;
    sendBuf_.clear();
    const auto h = s.header(0);
    codec::appendGetServices(sendBuf_, h);
    if (const int e = s.send(sendBuf_); e != 0) {
        return Error::sys(e, "IPVS dump services");
    }
    const std::uint32_t seqs[1] = {h.seq};
    int err[1] = {0};
    std::string extack[1];
    auto r = readReplies(s, seqs, err, extack,
                         [&](std::size_t, const codec::Message& m) -> Result<void> {
                             auto e = codec::decodeService(m.bytes);
                             if (e) {
                                 out.push_back(*e);
                                 return ok();
                             }
                             // Services this library cannot represent (another protocol or
                             // family) are someone else's; skip them, fail on garbage.
                             const int code = e.error().code.value();
                             if (code == EPROTONOSUPPORT || code == EAFNOSUPPORT) {
                                 return ok();
                             }
                             return e.error();
                         });
    if (!r) {
        (void)resetSocket(main_);
        return r.error().context("IPVS dump services");
    }
    if (err[0] != 0) {
        return Error::sys(err[0], withExtack("IPVS dump services", extack[0]));
    }
    return out;
}

namespace {

// Appends the dests of one virtual server to `out` with one dump on `s`.
Result<void> dumpDests(NetlinkIpvs::Socket& s, std::vector<std::uint8_t>& buf,
                       const ServiceKey& key, std::vector<DestEntry>& out, bool checkExists) {
    buf.clear();
    // A dest dump of a missing virtual server is empty, not an error: a GET_SERVICE in the
    // same sendmsg() tells the two apart when the caller needs to know.
    std::uint32_t seqs[2] = {0, 0};
    std::size_t n = 0;
    if (checkExists) {
        const auto g = s.header(NLM_F_ACK);
        codec::appendGetService(buf, g, key);
        seqs[n++] = g.seq;
    }
    const auto d = s.header(0);
    codec::appendGetDests(buf, d, key);
    const std::size_t dumpIdx = n;
    seqs[n++] = d.seq;
    const std::string what = "IPVS dump dests of " + key.toString();
    if (const int e = s.send(buf); e != 0) {
        return Error::sys(e, what);
    }
    const net::Family family = key.family();
    int err[2] = {0, 0};
    std::string extack[2];
    auto r = readReplies(s, std::span<const std::uint32_t>(seqs, n), std::span<int>(err, n),
                         std::span<std::string>(extack, n),
                         [&](std::size_t j, const codec::Message& m) -> Result<void> {
                             if (j != dumpIdx) {
                                 return ok();  // the GET_SERVICE answer: existence is enough
                             }
                             auto e = codec::decodeDest(m.bytes, family);
                             if (!e) {
                                 return e.error();
                             }
                             out.push_back(*e);
                             return ok();
                         });
    if (!r) {
        return r.error().context(what);
    }
    for (std::size_t j = 0; j < n; ++j) {
        if (err[j] != 0) {
            return Error::sys(err[j], withExtack(what, extack[j]));
        }
    }
    return ok();
}

}  // namespace

Result<std::vector<DestEntry>> NetlinkIpvs::dests(const ServiceKey& key) {
    auto ms = mainSocket();
    if (!ms) {
        return ms.error().context("IPVS dump dests");
    }
    std::vector<DestEntry> out;
    auto r = dumpDests(**ms, sendBuf_, key, out, true);
    if (!r) {
        const int code = r.error().code.value();
        if (code != ESRCH && code != ENOENT) {
            (void)resetSocket(main_);
        }
        return r.error();
    }
    return out;
}

Result<void> NetlinkIpvs::walk(const ServiceVisitor& fn, const ServiceFilter& want) {
    auto ws = walkSocket();
    if (!ws) {
        return ws.error();
    }
    Socket& destSock = **ws;
    auto ms = mainSocket();
    if (!ms) {
        return ms.error().context("IPVS walk");
    }
    Socket& mainSock = **ms;
    std::vector<std::uint8_t> destBuf;
    const auto& beforeStep = options_.beforeReadStep;
    sendBuf_.clear();
    const auto h = mainSock.header(0);
    codec::appendGetServices(sendBuf_, h);
    if (beforeStep) {
        beforeStep();
    }
    if (const int e = mainSock.send(sendBuf_); e != 0) {
        return Error::sys(e, "IPVS walk");
    }
    bool destSockDirty = false;
    const std::uint32_t seqs[1] = {h.seq};
    int err[1] = {0};
    std::string extack[1];
    // The service dump stays open on one socket while each service's dests are dumped on the
    // other: memory stays at one dump datagram plus one service's dests.
    auto r = readReplies(
        mainSock, seqs, err, extack,
        [&](std::size_t, const codec::Message& m) -> Result<void> {
            auto e = codec::decodeService(m.bytes);
            if (!e) {
                const int code = e.error().code.value();
                if (code == EPROTONOSUPPORT || code == EAFNOSUPPORT) {
                    return ok();
                }
                return e.error();
            }
            if (want && !want(e->service.key)) {
                return ok();
            }
            destScratch_.clear();
            if (beforeStep) {
                beforeStep();
            }
            auto d = dumpDests(destSock, destBuf, e->service.key, destScratch_, false);
            if (!d) {
                destSockDirty = true;
                return d.error();
            }
            fn(*e, destScratch_);
            return ok();
        },
        beforeStep);
    if (destSockDirty) {
        walk_.reset();
    }
    if (!r) {
        (void)resetSocket(main_);
        return r.error().context("IPVS walk");
    }
    if (err[0] != 0) {
        return Error::sys(err[0], withExtack("IPVS walk", extack[0]));
    }
    return ok();
}

// ---- apply ---------------------------------------------------------------------------------

std::vector<OpResult> NetlinkIpvs::apply(std::span<const Op> ops) {
    counters_.window = std::min(fullWindow_, std::max<std::size_t>(counters_.window, 1) * 2);
    std::vector<OpResult> results(ops.size());
    std::vector<Item> round;
    round.reserve(ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) {
        round.push_back(Item{i, ops[i].kind, false, false});
    }
    std::vector<int> errs;
    std::vector<std::string> extacks;
    // Each op converts at most once and is deferred at most once, so three rounds suffice;
    // the bound is a guard, not a limit ever reached.
    for (int pass = 0; !round.empty() && pass < 8; ++pass) {
        exchange(ops, round, errs, extacks);
        std::vector<Item> next;
        std::unordered_set<ServiceKey> followedUp;
        for (std::size_t k = 0; k < round.size(); ++k) {
            const Item& it = round[k];
            const Op& op = ops[it.index];
            const int err = errs[k];
            OpResult& res = results[it.index];
            if (err == 0) {
                res.outcome = it.converted ? Outcome::Converted : Outcome::Done;
                continue;
            }
            if (auto conv = conversionFor(it.kind, err); conv && !it.converted) {
                next.push_back(Item{it.index, *conv, true, it.deferred});
                followedUp.insert(op.service.key);
                ++counters_.followUps;
                continue;
            }
            if (isAbsent(it.kind, err)) {
                res.outcome = Outcome::Absent;
                continue;
            }
            // A dest op that found no virtual server, after an earlier op of this batch on
            // that virtual server turned into an add: try it once more after that add.
            if (err == ESRCH && isDestOp(it.kind) && !it.deferred &&
                followedUp.count(op.service.key) != 0) {
                next.push_back(Item{it.index, it.kind, it.converted, true});
                continue;
            }
            std::string what = op.toString();
            if (it.converted) {
                what += " (as " + std::string(opKindName(it.kind)) + ")";
            }
            res.outcome = Outcome::Failed;
            res.error = err;
            res.message = Error::sys(err, std::move(what)).message;
            if (!extacks[k].empty()) {
                res.message += " (" + extacks[k] + ")";
            }
        }
        round = std::move(next);
    }
    return results;
}

void NetlinkIpvs::exchange(std::span<const Op> ops, std::span<const Item> items,
                           std::vector<int>& errs, std::vector<std::string>& extacks) {
    const std::size_t n = items.size();
    errs.assign(n, 0);
    extacks.assign(n, std::string());
    if (n == 0) {
        return;
    }
    auto ms = mainSocket();
    if (!ms) {
        errs.assign(n, ms.error().code.value() != 0 ? ms.error().code.value() : EIO);
        return;
    }
    Socket& s = **ms;
    RecvSlots& slots = s.ackSlots();
    std::vector<bool> done(n, false);
    std::size_t remaining = n;
    // seq - seqBase indexes seqItem (the item a request carried) and seqState.
    // Nothing else uses the socket meanwhile, so the sequence numbers of this exchange are
    // consecutive from seqBase.
    enum : std::uint8_t { Waiting, Acked, Abandoned };
    const std::uint32_t seqBase = s.peekSeq();
    std::vector<std::uint32_t> seqItem;
    std::vector<std::uint8_t> seqState;
    seqItem.reserve(n);
    seqState.reserve(n);

    std::deque<std::size_t> queue;
    for (std::size_t k = 0; k < n; ++k) {
        queue.push_back(k);
    }
    const std::size_t chunkBytes = std::max<std::size_t>(
        4096, std::min<std::size_t>(options_.sendChunk,
                                    static_cast<std::size_t>(std::max(s.sendBuffer(), 0)) / 2));
    std::vector<std::size_t> chunk;       // items of the sendmsg() in flight, in order
    std::vector<std::uint32_t> chunkSeq;  // and their sequence numbers
    int timeouts = 0;

    auto failItem = [&](std::size_t k, int e) {
        if (!done[k]) {
            done[k] = true;
            errs[k] = e;
            --remaining;
        }
    };

    // Every queued request is sent, replays of acked ones too (see below).
    while (!queue.empty()) {
        chunk.clear();
        chunkSeq.clear();
        sendBuf_.clear();
        while (!queue.empty() && chunk.size() < counters_.window && sendBuf_.size() < chunkBytes) {
            const std::size_t k = queue.front();
            queue.pop_front();
            const Op& op = ops[items[k].index];
            const std::uint32_t seq = s.nextSeq();
            codec::appendOp(sendBuf_, codec::RequestHeader{s.family(), seq, NLM_F_ACK},
                            items[k].kind, op.service, op.dest);
            seqItem.push_back(static_cast<std::uint32_t>(k));
            seqState.push_back(Waiting);
            chunk.push_back(k);
            chunkSeq.push_back(seq);
        }
        counters_.requests += chunk.size();
        if (const int e = s.send(sendBuf_); e != 0) {
            if ((e == EMSGSIZE || e == ENOBUFS || e == ENOMEM) && chunk.size() > 1) {
                // Too big for the kernel right now: try again with smaller chunks.
                for (auto it = chunk.rbegin(); it != chunk.rend(); ++it) {
                    queue.push_front(*it);
                }
                for (std::uint32_t seq : chunkSeq) {
                    seqState[seq - seqBase] = Abandoned;
                }
                counters_.window = std::max<std::size_t>(1, chunk.size() / 2);
                continue;
            }
            for (std::size_t k : chunk) {
                failItem(k, e);
            }
            continue;
        }
        std::size_t waiting = chunk.size();
        bool lost = false;
        auto onAck = [&](ByteSpan bytes) {
            auto ack = codec::decodeAck(bytes);
            if (!ack) {
                return;
            }
            const std::uint32_t off = ack->seq - seqBase;
            if (off >= seqState.size() || seqState[off] != Waiting) {
                return;  // not one of ours, or already settled
            }
            seqState[off] = Acked;
            --waiting;
            const std::size_t k = seqItem[off];
            if (!done[k]) {
                done[k] = true;
                errs[k] = ack->error;
                extacks[k] = std::move(ack->extack);
                --remaining;
            }
        };
        auto onDatagram = [&](int i) {
            if (slots.truncated(i)) {
                // An ack cut short still has its sequence number and error up front.
                onAck(slots.datagram(i));
                return;
            }
            (void)codec::forEachMessage(slots.datagram(i), [&](const codec::Message& m) {
                if (m.type == NLMSG_ERROR) {
                    onAck(m.bytes);
                }
                return true;
            });
        };
        while (waiting > 0 && !lost) {
            auto got = s.receive(slots, true);
            if (!got) {
                const int e = got.error().code.value();
                if (e == ENOBUFS) {
                    ++counters_.overruns;
                } else if (e == ETIMEDOUT) {
                    ++timeouts;
                } else {
                    for (std::size_t k : chunk) {
                        failItem(k, e);
                    }
                    waiting = 0;
                    break;
                }
                // Take what is still queued; everything else of this chunk is lost.
                for (;;) {
                    auto more = s.receive(slots, false);
                    if (!more || *more == 0) {
                        break;
                    }
                    for (int i = 0; i < *more; ++i) {
                        onDatagram(i);
                    }
                }
                lost = true;
                break;
            }
            for (int i = 0; i < *got; ++i) {
                onDatagram(i);
            }
        }
        if (!lost) {
            timeouts = 0;
            continue;
        }
        for (std::uint32_t seq : chunkSeq) {
            if (seqState[seq - seqBase] == Waiting) {
                seqState[seq - seqBase] = Abandoned;
            }
        }
        if (timeouts >= kMaxTimeouts) {
            for (std::size_t k : chunk) {
                failItem(k, ETIMEDOUT);
            }
            continue;
        }
        // The kernel applied the whole chunk in order; only acks went missing. Send again from
        // the first unacked request on, acked ones included, so that the kernel sees the same
        // order again; results already known are kept.
        std::size_t first = 0;
        while (first < chunk.size() && done[chunk[first]]) {
            ++first;
        }
        for (std::size_t i = chunk.size(); i > first; --i) {
            queue.push_front(chunk[i - 1]);
        }
        counters_.resent += chunk.size() - first;
        counters_.window = std::max<std::size_t>(1, std::min(counters_.window, chunk.size()) / 2);
    }
    for (std::size_t k = 0; k < n; ++k) {
        if (!done[k]) {
            errs[k] = EIO;  // unreachable: every item is sent until it is settled
        }
    }
}

}  // namespace kipvs::ipvs
