#include "ipvs/host_netlink.h"

#include <netlink/netlink.h>
#include <netlink/socket.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace kipvs::ipvs::hostnl {

namespace {

// Receive buffer we ask for. Each queued ack costs about 1 KiB of it (skb overhead dwarfs the
// 36-byte message), so 8 MiB holds a chunk of 1,024 acks with room to spare.
constexpr int kRcvBuf = 8 << 20;
constexpr std::size_t kAckBudget = 2048;  // receive-buffer bytes reserved per in-flight request
constexpr std::size_t kMaxChunk = 1024;
constexpr std::size_t kMinChunk = 16;
// Send buffer we ask for: one netlink sendmsg() may not exceed it (less 32 bytes). libnl sets
// 32 KiB (64 KiB once the kernel doubles it), too little for a chunk of 1,024 IPv6 requests.
constexpr int kSndBuf = 1 << 20;
constexpr std::size_t kMaxSendBytes = 256 * 1024;
// A dump datagram is at most 32 KiB (the kernel caps it there); twice that for safety.
constexpr std::size_t kRxBuf = 64 * 1024;
constexpr int kTimeoutMs = 30'000;

std::size_t align4(std::size_t n) {
    return (n + 3U) & ~std::size_t{3};
}

}  // namespace

void MessageBuffer::pad() {
    buf_.resize(align4(buf_.size()), 0);
}

void MessageBuffer::begin(std::uint16_t type, std::uint16_t flags) {
    pad();
    current_ = buf_.size();
    offsets_.push_back(current_);
    buf_.resize(current_ + sizeof(nlmsghdr), 0);
    nlmsghdr* h = at(current_);
    h->nlmsg_type = type;
    h->nlmsg_flags = static_cast<std::uint16_t>(flags | NLM_F_REQUEST);
    h->nlmsg_len = sizeof(nlmsghdr);
}

void MessageBuffer::putHeader(const void* data, std::size_t len) {
    pad();
    const std::size_t off = buf_.size();
    buf_.resize(off + len, 0);
    std::memcpy(buf_.data() + off, data, len);
}

void MessageBuffer::putAttr(std::uint16_t type, const void* data, std::size_t len) {
    pad();
    const std::size_t off = buf_.size();
    buf_.resize(off + sizeof(nlattr) + len, 0);
    nlattr a{};
    a.nla_type = type;
    a.nla_len = static_cast<std::uint16_t>(sizeof(nlattr) + len);
    std::memcpy(buf_.data() + off, &a, sizeof a);
    if (len > 0) {
        std::memcpy(buf_.data() + off + sizeof(nlattr), data, len);
    }
}

void MessageBuffer::putString(std::uint16_t type, std::string_view s) {
    std::string z(s);
    putAttr(type, z.c_str(), z.size() + 1);
}

std::size_t MessageBuffer::beginNest(std::uint16_t type) {
    pad();
    const std::size_t off = buf_.size();
    putAttr(static_cast<std::uint16_t>(type | NLA_F_NESTED), nullptr, 0);
    return off;
}

void MessageBuffer::endNest(std::size_t handle) {
    pad();
    nlattr a{};
    std::memcpy(&a, buf_.data() + handle, sizeof a);
    a.nla_len = static_cast<std::uint16_t>(buf_.size() - handle);
    std::memcpy(buf_.data() + handle, &a, sizeof a);
}

void MessageBuffer::end() {
    pad();
    at(current_)->nlmsg_len = static_cast<std::uint32_t>(buf_.size() - current_);
}

void MessageBuffer::append(const nlmsghdr* msg) {
    pad();
    current_ = buf_.size();
    offsets_.push_back(current_);
    buf_.resize(current_ + msg->nlmsg_len, 0);
    std::memcpy(buf_.data() + current_, msg, msg->nlmsg_len);
    pad();
}

std::size_t MessageBuffer::span(std::size_t first, std::size_t last) const {
    const auto* h = message(last);
    return offsets_[last] + align4(h->nlmsg_len) - offsets_[first];
}

void Socket::SockDeleter::operator()(nl_sock* s) const {
    nl_socket_free(s);
}

Socket::Socket(std::unique_ptr<nl_sock, SockDeleter> sock, std::size_t chunk, std::size_t maxSend)
    : sock_(std::move(sock)), chunk_(chunk), maxSend_(maxSend), rx_(kRxBuf) {}
Socket::Socket(Socket&&) noexcept = default;
Socket& Socket::operator=(Socket&&) noexcept = default;
Socket::~Socket() = default;

int Socket::fd() const {
    return nl_socket_get_fd(sock_.get());
}

Result<Socket> Socket::open(int protocol) {
    std::unique_ptr<nl_sock, SockDeleter> sock(nl_socket_alloc());
    if (!sock) {
        return Error::sys(ENOMEM, "netlink socket");
    }
    if (int err = nl_connect(sock.get(), protocol); err < 0) {
        return Error::invalid(std::string("netlink connect: ") + nl_geterror(err));
    }
    const int fd = nl_socket_get_fd(sock.get());
    // libnl opens with SOCK_CLOEXEC where it can; make sure, so iptables-restore and other
    // children never inherit it.
    if (::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        return Error::sys(errno, "netlink socket close-on-exec");
    }
    // The FORCE variant (CAP_NET_ADMIN, which we need anyway) ignores net.core.rmem_max.
    int rcv = kRcvBuf;
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0) {
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    }
    int snd = kSndBuf;
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) < 0) {
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
    }
    int one = 1;
    // Acks carry only the header of the request, not the request itself: smaller acks, more
    // of them per receive buffer.
    ::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    // The kernel's error text ("Nexthop device is not up") goes into our messages.
    ::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    int actual = 0;
    socklen_t len = sizeof actual;
    if (::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &actual, &len) < 0) {
        actual = 212992;
    }
    const std::size_t chunk =
        std::clamp(static_cast<std::size_t>(actual) / kAckBudget, kMinChunk, kMaxChunk);
    int sndActual = 0;
    len = sizeof sndActual;
    if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndActual, &len) < 0) {
        sndActual = 65536;
    }
    // The kernel refuses a send longer than the send buffer less 32 bytes (EMSGSIZE).
    const std::size_t maxSend =
        std::clamp(static_cast<std::size_t>(sndActual) / 2, std::size_t{4096}, kMaxSendBytes);
    return Socket(std::move(sock), chunk, maxSend);
}

namespace {

void parseAck(const nlmsghdr* h, Status& st) {
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
        st.error = EPROTO;
        st.extack = "truncated netlink ack";
        return;
    }
    const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
    st.error = -err->error;
    if ((h->nlmsg_flags & NLM_F_ACK_TLVS) == 0) {
        return;
    }
    std::size_t off = NLMSG_LENGTH(sizeof(nlmsgerr));
    if ((h->nlmsg_flags & NLM_F_CAPPED) == 0) {
        off += NLMSG_ALIGN(err->msg.nlmsg_len) - sizeof(nlmsghdr);
    }
    const auto* base = reinterpret_cast<const std::uint8_t*>(h);
    while (off + sizeof(nlattr) <= h->nlmsg_len) {
        nlattr a{};
        std::memcpy(&a, base + off, sizeof a);
        if (a.nla_len < sizeof(nlattr) || off + a.nla_len > h->nlmsg_len) {
            break;
        }
        if ((a.nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && a.nla_len > sizeof(nlattr)) {
            const char* s = reinterpret_cast<const char*>(base + off + sizeof(nlattr));
            st.extack.assign(s, strnlen(s, a.nla_len - sizeof(nlattr)));
        }
        off += align4(a.nla_len);
    }
}

}  // namespace

int Socket::receive(std::size_t first, std::size_t last, std::uint32_t firstSeq,
                    std::vector<Status>& out, std::vector<bool>& done, const DataFn& onData) {
    std::size_t pending = last - first + 1;
    const std::uint32_t n = static_cast<std::uint32_t>(pending);
    while (pending > 0) {
        pollfd p{fd(), POLLIN, 0};
        const int pr = ::poll(&p, 1, kTimeoutMs);
        if (pr < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (pr == 0) {
            return ETIMEDOUT;
        }
        const ssize_t got = ::recv(fd(), rx_.data(), rx_.size(), MSG_TRUNC | MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            return errno;  // ENOBUFS: the kernel dropped replies
        }
        if (static_cast<std::size_t>(got) > rx_.size()) {
            return EMSGSIZE;
        }
        const auto total = static_cast<std::size_t>(got);
        std::size_t off = 0;
        while (off + sizeof(nlmsghdr) <= total) {
            const auto* h = reinterpret_cast<const nlmsghdr*>(rx_.data() + off);
            if (h->nlmsg_len < sizeof(nlmsghdr) || off + h->nlmsg_len > total) {
                break;
            }
            off += align4(h->nlmsg_len);
            const std::uint32_t rel = h->nlmsg_seq - firstSeq;
            if (rel >= n) {
                continue;  // a late reply to an earlier, abandoned chunk
            }
            const std::size_t idx = first + rel;
            if (done[idx]) {
                continue;
            }
            Status& st = out[idx];
            if ((h->nlmsg_flags & NLM_F_DUMP_INTR) != 0) {
                st.interrupted = true;
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                parseAck(h, st);
            } else if (h->nlmsg_type == NLMSG_DONE) {
                if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
                    int v = 0;
                    std::memcpy(&v, NLMSG_DATA(h), sizeof v);
                    st.error = v < 0 ? -v : 0;
                }
            } else {
                if (h->nlmsg_type >= NLMSG_MIN_TYPE && onData) {
                    onData(idx, h);
                }
                continue;
            }
            done[idx] = true;
            --pending;
        }
    }
    return 0;
}

std::vector<Status> Socket::exchange(MessageBuffer& batch, const DataFn& onData) {
    const std::size_t total = batch.count();
    std::vector<Status> out(total);
    std::vector<bool> done(total, false);
    std::size_t i = 0;
    while (i < total) {
        // One chunk: as many messages as the receive buffer can ack and one send can carry.
        std::size_t j = i;
        std::size_t bytes = 0;
        while (j < total && j - i < chunk_) {
            const std::size_t add = align4(batch.message(j)->nlmsg_len);
            if (j > i && bytes + add > maxSend_) {
                break;
            }
            bytes += add;
            ++j;
        }
        const std::uint32_t firstSeq = seq_;
        for (std::size_t k = i; k < j; ++k) {
            nlmsghdr* h = batch.message(k);
            h->nlmsg_seq = seq_++;
            h->nlmsg_pid = 0;
        }
        // Sequence numbers of one chunk must not wrap: the ack matching assumes a contiguous
        // range starting at firstSeq.
        if (seq_ < firstSeq) {
            seq_ = 1;
            continue;
        }
        int err = 0;
        std::string why;
        for (;;) {
            const ssize_t sent = ::send(fd(), batch.bytes(i), batch.span(i, j - 1), 0);
            if (sent < 0 && errno == EINTR) {
                continue;
            }
            if (sent < 0) {
                err = errno;
                why = "send of " + std::to_string(j - i) + " requests (" +
                      std::to_string(batch.span(i, j - 1)) + " bytes) failed";
            }
            break;
        }
        if (err == 0) {
            err = receive(i, j - 1, firstSeq, out, done, onData);
            why = err == ENOBUFS ? "reply lost (socket receive buffer full)"
                                 : "no reply from the kernel";
        }
        if (err != 0) {
            for (std::size_t k = i; k < j; ++k) {
                if (!done[k]) {
                    out[k].error = err;
                    out[k].extack = why;
                }
            }
            if (err == ENOBUFS) {
                chunk_ = std::max(kMinChunk, chunk_ / 2);
            } else if (err != ETIMEDOUT) {
                // A broken socket: the remaining messages would fail the same way.
                for (std::size_t k = j; k < total; ++k) {
                    out[k].error = err;
                    out[k].extack = "not sent";
                }
                return out;
            }
        }
        i = j;
    }
    return out;
}

namespace {

// Calls fn for each well-formed attribute in [p, p + len), in order; stops at a malformed one.
template <class Fn>
void walkRange(const std::uint8_t* p, std::size_t len, Fn&& fn) {
    std::size_t off = 0;
    while (off + sizeof(nlattr) <= len) {
        const auto* a = reinterpret_cast<const nlattr*>(p + off);
        if (a->nla_len < sizeof(nlattr) || off + a->nla_len > len) {
            break;
        }
        fn(a);
        off += align4(a->nla_len);
    }
}

void parseRange(const std::uint8_t* p, std::size_t len, std::vector<const nlattr*>& tb) {
    std::fill(tb.begin(), tb.end(), nullptr);
    walkRange(p, len, [&](const nlattr* a) {
        const std::size_t type = a->nla_type & NLA_TYPE_MASK;
        if (type < tb.size()) {
            tb[type] = a;
        }
    });
}

}  // namespace

bool parseAttrs(const nlmsghdr* h, std::size_t hdrlen, std::vector<const nlattr*>& tb) {
    const std::size_t start = NLMSG_LENGTH(align4(hdrlen));
    if (h->nlmsg_len < NLMSG_LENGTH(hdrlen)) {
        std::fill(tb.begin(), tb.end(), nullptr);
        return false;
    }
    const auto* base = reinterpret_cast<const std::uint8_t*>(h);
    parseRange(base + start, h->nlmsg_len > start ? h->nlmsg_len - start : 0, tb);
    return true;
}

void parseNested(const nlattr* a, std::vector<const nlattr*>& tb) {
    parseRange(static_cast<const std::uint8_t*>(attrData(a)), attrLen(a), tb);
}

void forEachNested(const nlattr* a, const std::function<void(const nlattr*)>& fn) {
    walkRange(static_cast<const std::uint8_t*>(attrData(a)), attrLen(a), fn);
}

std::uint32_t attrU32(const nlattr* a) {
    std::uint32_t v = 0;
    if (attrLen(a) >= sizeof v) {
        std::memcpy(&v, attrData(a), sizeof v);
    }
    return v;
}

std::string attrString(const nlattr* a) {
    const char* s = static_cast<const char*>(attrData(a));
    return {s, strnlen(s, attrLen(a))};
}

Status dumpConsistent(const std::function<void()>& restart, const std::function<Status()>& once,
                      int tries) {
    Status st;
    for (int attempt = 0; attempt < tries; ++attempt) {
        restart();
        st = once();
        if (!st.ok() || !st.interrupted) {
            return st;
        }
    }
    st.error = EAGAIN;
    st.extack = "the table changed during each of " + std::to_string(tries) + " dumps";
    return st;
}

std::string describe(const Status& s) {
    std::string m = std::error_code(s.error, std::generic_category()).message();
    if (!s.extack.empty()) {
        m += ": " + s.extack;
    }
    return m;
}

}  // namespace kipvs::ipvs::hostnl
