// Every kernel object name kube-ipvs owns, in one place.
//
// The names are kube-proxy's, so that a node switched from kube-proxy (or back) finds its
// objects where it expects them and converges without a flush.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ipvs/net.h"

namespace kipvs::names {

inline constexpr std::string_view kDummyInterface = "kube-ipvs0";

// Default masquerade bit (--iptables-masquerade-bit); the mark is 1 << bit.
inline constexpr int kDefaultMasqueradeBit = 14;

// ipsets. IPv6 sets replace the "KUBE-" prefix with "KUBE-6-" and are cut to 31 characters,
// the kernel's limit (IPSET_MAXNAMELEN - 1); see setName().
inline constexpr std::string_view kSetLoopBack = "KUBE-LOOP-BACK";
inline constexpr std::string_view kSetClusterIp = "KUBE-CLUSTER-IP";
inline constexpr std::string_view kSetExternalIp = "KUBE-EXTERNAL-IP";
inline constexpr std::string_view kSetExternalIpLocal = "KUBE-EXTERNAL-IP-LOCAL";
inline constexpr std::string_view kSetLoadBalancer = "KUBE-LOAD-BALANCER";
inline constexpr std::string_view kSetLoadBalancerLocal = "KUBE-LOAD-BALANCER-LOCAL";
inline constexpr std::string_view kSetLoadBalancerFw = "KUBE-LOAD-BALANCER-FW";
inline constexpr std::string_view kSetLoadBalancerSourceCidr = "KUBE-LOAD-BALANCER-SOURCE-CIDR";
inline constexpr std::string_view kSetLoadBalancerSourceIp = "KUBE-LOAD-BALANCER-SOURCE-IP";
inline constexpr std::string_view kSetNodePortTcp = "KUBE-NODE-PORT-TCP";
inline constexpr std::string_view kSetNodePortLocalTcp = "KUBE-NODE-PORT-LOCAL-TCP";
inline constexpr std::string_view kSetNodePortUdp = "KUBE-NODE-PORT-UDP";
inline constexpr std::string_view kSetNodePortLocalUdp = "KUBE-NODE-PORT-LOCAL-UDP";
inline constexpr std::string_view kSetNodePortSctp = "KUBE-NODE-PORT-SCTP-HASH";
inline constexpr std::string_view kSetNodePortLocalSctp = "KUBE-NODE-PORT-LOCAL-SCTP-HASH";
inline constexpr std::string_view kSetHealthCheckNodePort = "KUBE-HEALTH-CHECK-NODE-PORT";
inline constexpr std::string_view kSetIpvsIps = "KUBE-IPVS-IPS";

// The family's name of a set: "KUBE-CLUSTER-IP" or "KUBE-6-CLUSTER-IP", at most 31 characters.
std::string setName(std::string_view base, net::Family f);

// iptables chains.
inline constexpr std::string_view kChainServices = "KUBE-SERVICES";
inline constexpr std::string_view kChainPostrouting = "KUBE-POSTROUTING";
inline constexpr std::string_view kChainNodePort = "KUBE-NODE-PORT";
inline constexpr std::string_view kChainLoadBalancer = "KUBE-LOAD-BALANCER";
inline constexpr std::string_view kChainMarkMasq = "KUBE-MARK-MASQ";
inline constexpr std::string_view kChainForward = "KUBE-FORWARD";
inline constexpr std::string_view kChainProxyFirewall = "KUBE-PROXY-FIREWALL";
inline constexpr std::string_view kChainSourceRangesFirewall = "KUBE-SOURCE-RANGES-FIREWALL";
inline constexpr std::string_view kChainIpvsFilter = "KUBE-IPVS-FILTER";
inline constexpr std::string_view kChainIpvsOutFilter = "KUBE-IPVS-OUT-FILTER";
// A chain no rule jumps to: its one rule's comment records what the last restore wrote, so
// a restarted kube-ipvs can tell that our rules are already in place (filter table).
inline constexpr std::string_view kChainIpvsState = "KUBE-IPVS-STATE";

}  // namespace kipvs::names
