// End-to-end proof that the guest path works: from C++, through libnl, against the guest's
// kernel. Resolves the IPVS generic netlink family and reads its version, creates a dummy link,
// then checks both with the independent tools an operator would use (ipvsadm, ip).
#include <catch2/catch.hpp>

#include <linux/ip_vs.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>

#include <array>
#include <cstdio>
#include <memory>
#include <string>

namespace {

struct SockDeleter {
    void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using Sock = std::unique_ptr<nl_sock, SockDeleter>;

std::string capture(const std::string& cmd) {
    std::string out;
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen((cmd + " 2>&1").c_str(), "r"), pclose);
    REQUIRE(p);
    std::array<char, 4096> buf{};
    std::size_t n = 0;
    while ((n = fread(buf.data(), 1, buf.size(), p.get())) > 0) {
        out.append(buf.data(), n);
    }
    return out;
}

int onInfo(nl_msg* msg, void* arg) {
    auto* version = static_cast<std::uint32_t*>(arg);
    nlattr* attrs[IPVS_INFO_ATTR_MAX + 1] = {};
    if (genlmsg_parse(nlmsg_hdr(msg), 0, attrs, IPVS_INFO_ATTR_MAX, nullptr) == 0 &&
        attrs[IPVS_INFO_ATTR_VERSION] != nullptr) {
        *version = nla_get_u32(attrs[IPVS_INFO_ATTR_VERSION]);
    }
    return NL_OK;
}

}  // namespace

TEST_CASE("the guest kernel has IPVS over generic netlink", "[kernel][smoke]") {
    Sock sock(nl_socket_alloc());
    REQUIRE(sock);
    REQUIRE(genl_connect(sock.get()) == 0);
    const int family = genl_ctrl_resolve(sock.get(), IPVS_GENL_NAME);
    INFO("genl_ctrl_resolve(IPVS): " << (family < 0 ? nl_geterror(family) : "ok"));
    REQUIRE(family > 0);

    std::unique_ptr<nl_msg, void (*)(nl_msg*)> msg(nlmsg_alloc(), nlmsg_free);
    REQUIRE(genlmsg_put(msg.get(), NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, 0, IPVS_CMD_GET_INFO,
                        IPVS_GENL_VERSION) != nullptr);
    std::uint32_t version = 0;
    REQUIRE(nl_socket_modify_cb(sock.get(), NL_CB_VALID, NL_CB_CUSTOM, onInfo, &version) == 0);
    REQUIRE(nl_send_auto(sock.get(), msg.get()) >= 0);
    REQUIRE(nl_recvmsgs_default(sock.get()) == 0);
    REQUIRE(version != 0);

    // ipvsadm prints "IP Virtual Server version 1.2.1 (size=4096)": the same version we read.
    const std::string expect = "IP Virtual Server version " + std::to_string(version >> 16) + "." +
                               std::to_string((version >> 8) & 0xff) + "." +
                               std::to_string(version & 0xff);
    const auto listing = capture("ipvsadm -Ln");
    INFO(listing);
    CHECK(listing.find(expect) != std::string::npos);
}

TEST_CASE("the guest kernel creates dummy links through rtnetlink", "[kernel][smoke]") {
    Sock sock(nl_socket_alloc());
    REQUIRE(sock);
    REQUIRE(nl_connect(sock.get(), NETLINK_ROUTE) == 0);

    std::unique_ptr<rtnl_link, void (*)(rtnl_link*)> link(rtnl_link_alloc(), rtnl_link_put);
    REQUIRE(link);
    rtnl_link_set_name(link.get(), "kipvs-smoke0");
    REQUIRE(rtnl_link_set_type(link.get(), "dummy") == 0);
    const int err = rtnl_link_add(sock.get(), link.get(), NLM_F_CREATE | NLM_F_EXCL);
    INFO("rtnl_link_add: " << nl_geterror(err));
    REQUIRE(err == 0);

    const auto shown = capture("ip -d link show kipvs-smoke0");
    INFO(shown);
    CHECK(shown.find("kipvs-smoke0:") != std::string::npos);
    CHECK(shown.find("dummy") != std::string::npos);
    // Created but not brought up, as kube-proxy leaves kube-ipvs0.
    CHECK(shown.find("state DOWN") != std::string::npos);
}
