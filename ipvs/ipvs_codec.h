// Encoding and decoding of IPVS generic netlink messages, with no socket in sight.
//
// Requests are appended to a byte buffer as complete netlink messages (nlmsghdr + genlmsghdr +
// attributes), so that many of them can be packed into one sendmsg() and so that tests can
// check them byte for byte. Replies are decoded from a byte span holding one netlink message;
// every length is checked against the span and attributes are read through one policy table
// per attribute set, so a malformed reply is an Error, never undefined behaviour. This is the
// surface a fuzzer drives.
//
// Conventions at this edge:
//  * Addresses are sent as the kernel's 16-byte union nf_inet_addr (as ipvsadm does); in
//    replies a 16-byte or, for IPv4, a 4-byte address is accepted and anything else is an error.
//  * VirtualServer::netmask is host order: 0xffffff00 for an IPv4 /24. On the wire an IPv4 mask
//    is in network order (it is a __be32 in the kernel); an IPv6 prefix length is sent as is.
//  * HASHED is never sent and is stripped from services read back.
//  * Replies may carry more attributes than this code knows (ignored) or fewer: a missing
//    optional attribute takes its default (no IPVS_DEST_ATTR_ADDR_FAMILY means the service's
//    family, no STATS64 means STATS, no stats at all means zero counters).
//  * Decode errors carry EPROTO (malformed) or, for a well-formed object this library cannot
//    represent (another protocol such as ESP, another address family), EPROTONOSUPPORT or
//    EAFNOSUPPORT, so that a listing can skip foreign objects and still fail on garbage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ipvs/error.h"
#include "ipvs/types.h"

namespace kipvs::ipvs::codec {

using Bytes = std::vector<std::uint8_t>;
using ByteSpan = std::span<const std::uint8_t>;

// The netlink header fields of one request. `family` is the generic netlink family id of
// "IPVS", resolved once per socket.
struct RequestHeader {
    std::uint16_t family = 0;
    std::uint32_t seq = 0;
    std::uint16_t flags = 0;  // NLM_F_REQUEST is always added
};

// Writes: the command for `kind` with the service (key only for deletes and dest ops) and,
// for dest ops, the real server (address and port only for deletes).
void appendOp(Bytes& out, const RequestHeader& h, OpKind kind, const VirtualServer& vs,
              const RealServer& rs);
inline void appendOp(Bytes& out, const RequestHeader& h, const Op& op) {
    appendOp(out, h, op.kind, op.service, op.dest);
}

// Reads and the rest. A dump request needs NLM_F_DUMP in `h.flags`.
void appendGetService(Bytes& out, const RequestHeader& h, const ServiceKey& key);
void appendGetServices(Bytes& out, const RequestHeader& h);                      // sets NLM_F_DUMP
void appendGetDests(Bytes& out, const RequestHeader& h, const ServiceKey& key);  // NLM_F_DUMP
void appendGetInfo(Bytes& out, const RequestHeader& h);
void appendGetConfig(Bytes& out, const RequestHeader& h);
// Only the non-zero fields are sent: the kernel keeps the value of an absent attribute.
void appendSetConfig(Bytes& out, const RequestHeader& h, const Timeouts& t);
void appendFlush(Bytes& out, const RequestHeader& h);

// The generic netlink command of each op kind (IPVS_CMD_*).
std::uint8_t commandOf(OpKind kind);

// ---- Decoding ------------------------------------------------------------------------------

// One netlink message inside a received datagram.
struct Message {
    std::uint16_t type = 0;
    std::uint16_t flags = 0;
    std::uint32_t seq = 0;
    std::uint32_t pid = 0;
    ByteSpan bytes;  // the whole message, header included
};

// Splits a datagram into messages. Returns an error if a header is truncated or a length runs
// past the datagram; messages before the bad one have already been handed to `fn`.
// `fn(const Message&)` returns bool: false stops early.
template <class Fn>
Result<void> forEachMessage(ByteSpan datagram, Fn&& fn);

// The message at `offset` of `datagram` and the offset of the next one.
Result<Message> messageAt(ByteSpan datagram, std::size_t offset, std::size_t& next);

// An NLMSG_ERROR message: error 0 is an ack. `extack` is the kernel's message, if it sent one.
struct Ack {
    std::uint32_t seq = 0;
    int error = 0;  // positive errno, 0 for success
    std::string extack;
};
// Accepts acks with or without the original request (NETLINK_CAP_ACK) and with or without
// extended-ack attributes. A truncated original request is fine (only its header is read).
Result<Ack> decodeAck(ByteSpan message);
// The error of an NLMSG_DONE message (0 if it carries none).
Result<int> decodeDone(ByteSpan message);

// IPVS_CMD_NEW_SERVICE replies (services dump or single get).
Result<ServiceEntry> decodeService(ByteSpan genlMessage);
// IPVS_CMD_NEW_DEST replies (dests dump). `serviceFamily` is what a reply without
// IPVS_DEST_ATTR_ADDR_FAMILY means.
Result<DestEntry> decodeDest(ByteSpan genlMessage, net::Family serviceFamily);
// IPVS_CMD_SET_INFO reply to GET_INFO.
Result<Info> decodeInfo(ByteSpan genlMessage);
// IPVS_CMD_SET_CONFIG reply to GET_CONFIG. Absent timeouts read as 0.
Result<Timeouts> decodeConfig(ByteSpan genlMessage);

// ---- Template implementation ---------------------------------------------------------------

template <class Fn>
Result<void> forEachMessage(ByteSpan datagram, Fn&& fn) {
    std::size_t offset = 0;
    while (offset < datagram.size()) {
        std::size_t next = 0;
        auto msg = messageAt(datagram, offset, next);
        if (!msg) {
            return msg.error();
        }
        if (!fn(*msg)) {
            return ok();
        }
        offset = next;
    }
    return ok();
}

}  // namespace kipvs::ipvs::codec
