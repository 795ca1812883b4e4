// The real Transport: HTTP/1.1 with keep-alive over TCP (http://) or TLS via OpenSSL
// (https://), on Beast. Every step has a deadline: connect, TLS handshake, write, response
// headers, and each read of the body (the body deadline is an idle deadline).
//
// TLS verifies the server against the configured CA (or the system roots) and checks the
// name: tls-server-name if set, else the URL's host, as a DNS name or as an IP SAN. SNI is
// sent for DNS names. Verification is off only with insecure-skip-tls-verify.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "ipvs/error.h"
#include "k8s-client/config.h"
#include "k8s-client/transport.h"

namespace boost::asio {
class io_context;
}

namespace kipvs::k8s {

struct TransportOptions {
    Duration connectTimeout = std::chrono::seconds(10);
    Duration handshakeTimeout = std::chrono::seconds(10);
    Duration writeTimeout = std::chrono::seconds(10);
    // Idle keep-alive connections kept for reuse.
    std::size_t maxIdleConnections = 4;
    // TCP keepalive on every connection: probes after this long without traffic, then every
    // keepaliveInterval, and the connection fails after keepaliveProbes unanswered ones. A
    // watch is quiet for minutes and must not be cut short (its timeoutSeconds rules), but an
    // API server that vanished without a reset (host down, a NAT or load balancer that
    // dropped the flow) is noticed within about a minute instead of when the watch's idle
    // deadline (6 to 11 minutes) passes. client-go's dialer sets keepalive too (30 s).
    Duration keepaliveIdle = std::chrono::seconds(30);
    Duration keepaliveInterval = std::chrono::seconds(10);
    int keepaliveProbes = 3;
    // Offer ChaCha20-Poly1305 before AES-GCM. Unset: when the CPU has no AES instructions
    // (tlsPrefersChaCha()), where it decrypts several times faster. Go's crypto/tls and
    // BoringSSL clients order their offer the same way, and a kube-apiserver (Go) follows a
    // client that puts ChaCha20 first.
    std::optional<bool> preferChaCha;
};

// Whether this CPU lacks the AES and carry-less multiply instructions that make AES-GCM fast
// (x86-64; false elsewhere, where OpenSSL's order is kept).
bool tlsPrefersChaCha();

// Fails when the TLS material does not load (the message names its source, e.g.
// "kubeconfig /k.yaml: users[0].user.client-key-data: not a PEM private key: ...").
Result<std::shared_ptr<Transport>> makeHttpTransport(boost::asio::io_context& ioc,
                                                     const ClientConfig& config,
                                                     const TransportOptions& options = {});

}  // namespace kipvs::k8s
