// Batched netlink requests for the host-side kernel objects (addresses, local routes,
// conntrack entries).
//
// A node with 40,000 Services has 40,000 addresses (or local routes) on kube-ipvs0, and a
// restart or a large change touches many of them at once. One request per sendmsg() with one
// wait for its ack makes that 40,000 round trips. Here many requests go out in one sendmsg(),
// the kernel processes them in order inside that call, and their acks are read back in bulk
// and matched to the requests by sequence number.
//
// Messages are built back to back in a MessageBuffer (plain bytes, so they can be inspected
// without a socket); the Socket is a libnl socket used only for its file descriptor.
#pragma once

#include <linux/netlink.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ipvs/error.h"

struct nl_sock;

namespace kipvs::ipvs::hostnl {

// Netlink messages laid out back to back, as they go on the wire.
class MessageBuffer {
  public:
    // Starts a message (NLM_F_REQUEST is added to `flags`). Finish it with end().
    void begin(std::uint16_t type, std::uint16_t flags);
    // The family header that follows nlmsghdr (ifaddrmsg, rtmsg, nfgenmsg, ...).
    void putHeader(const void* data, std::size_t len);
    template <class T>
    void putHeader(const T& header) {
        putHeader(&header, sizeof header);
    }
    void putAttr(std::uint16_t type, const void* data, std::size_t len);
    void putU32(std::uint16_t type, std::uint32_t value) { putAttr(type, &value, sizeof value); }
    void putString(std::uint16_t type, std::string_view s);  // NUL-terminated
    // Nested attributes: beginNest returns a handle for endNest.
    std::size_t beginNest(std::uint16_t type);
    void endNest(std::size_t handle);
    void end();

    // Copies a complete message built elsewhere (e.g. by libnetfilter_conntrack).
    void append(const nlmsghdr* msg);

    std::size_t count() const { return offsets_.size(); }
    nlmsghdr* message(std::size_t i) { return at(offsets_[i]); }
    const nlmsghdr* message(std::size_t i) const {
        return reinterpret_cast<const nlmsghdr*>(buf_.data() + offsets_[i]);
    }
    // Bytes from the start of message `first` to the end of message `last` (inclusive).
    std::size_t span(std::size_t first, std::size_t last) const;
    const std::uint8_t* bytes(std::size_t first) const { return buf_.data() + offsets_[first]; }

  private:
    nlmsghdr* at(std::size_t offset) { return reinterpret_cast<nlmsghdr*>(buf_.data() + offset); }
    void pad();

    std::vector<std::uint8_t> buf_;
    std::vector<std::size_t> offsets_;
    std::size_t current_ = 0;
};

// How the kernel answered one request.
struct Status {
    int error = 0;             // 0, or the positive errno of the kernel's ack
    std::string extack;        // the kernel's extended-ack text, if it sent one
    bool interrupted = false;  // a dump whose table changed under it (NLM_F_DUMP_INTR)
    bool ok() const { return error == 0; }
};

class Socket {
  public:
    // A connected socket of `protocol` (NETLINK_ROUTE, NETLINK_NETFILTER), close-on-exec,
    // with a receive buffer large enough for a chunk of acks.
    static Result<Socket> open(int protocol);

    Socket(Socket&&) noexcept;
    Socket& operator=(Socket&&) noexcept;
    ~Socket();

    // Called for every reply message that is not the final ack (dump entries, GET replies).
    using DataFn = std::function<void(std::size_t index, const nlmsghdr* msg)>;

    // Sends every message of `batch`, assigning sequence numbers, in chunks of many messages
    // per sendmsg(), and waits for each chunk's acks. Requests must carry NLM_F_ACK, except
    // dumps, which end at NLMSG_DONE. Returns one Status per message, in order. A socket
    // failure (send error, lost acks, timeout) fails the messages it left unanswered with
    // that errno; they may or may not have been applied.
    std::vector<Status> exchange(MessageBuffer& batch, const DataFn& onData = {});

    // How many requests go out per sendmsg(), derived from the receive buffer so that a
    // chunk's acks never overflow it (the kernel drops acks that do not fit).
    std::size_t chunkSize() const { return chunk_; }

  private:
    struct SockDeleter {
        void operator()(nl_sock* s) const;
    };
    Socket(std::unique_ptr<nl_sock, SockDeleter> sock, std::size_t chunk, std::size_t maxSend);
    int fd() const;
    // Reads replies until every message in [first, last] is answered or the socket fails.
    int receive(std::size_t first, std::size_t last, std::uint32_t firstSeq,
                std::vector<Status>& out, std::vector<bool>& done, const DataFn& onData);

    std::unique_ptr<nl_sock, SockDeleter> sock_;
    std::size_t chunk_ = 256;
    std::size_t maxSend_ = 32768;  // bytes per sendmsg()
    std::uint32_t seq_ = 1;
    std::vector<std::uint8_t> rx_;
};

// "File exists" or "Network is down: Nexthop device is not up".
std::string describe(const Status& s);

// Runs one dump (`once`, after `restart` drops what an earlier try collected) until a try is
// not interrupted (NLM_F_DUMP_INTR: the table changed under it, so entries may be missing or
// doubled), at most `tries` times. If the last try is interrupted too, that is an error
// (EAGAIN): what it collected must not be taken for the table.
Status dumpConsistent(const std::function<void()>& restart, const std::function<Status()>& once,
                      int tries = 3);

// The attributes of message `h` after its `hdrlen`-byte family header, indexed by type
// (nullptr where absent; types above tb.size() - 1 are ignored). False if the message is
// shorter than its header.
bool parseAttrs(const nlmsghdr* h, std::size_t hdrlen, std::vector<const nlattr*>& tb);
// The attributes nested in `a`, likewise.
void parseNested(const nlattr* a, std::vector<const nlattr*>& tb);
// Each attribute nested in `a`, in order: for nests that repeat one type (a list of entries).
void forEachNested(const nlattr* a, const std::function<void(const nlattr*)>& fn);
inline const void* attrData(const nlattr* a) {
    return reinterpret_cast<const std::uint8_t*>(a) + NLA_HDRLEN;
}
inline std::size_t attrLen(const nlattr* a) {
    return a->nla_len - NLA_HDRLEN;
}
std::uint32_t attrU32(const nlattr* a);
std::string attrString(const nlattr* a);

}  // namespace kipvs::ipvs::hostnl
