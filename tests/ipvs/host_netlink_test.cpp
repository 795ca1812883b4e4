// MessageBuffer lays netlink messages out as the kernel reads them, with no socket involved.
#include <catch2/catch.hpp>

#include <linux/rtnetlink.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "ipvs/host_netlink.h"

using namespace kipvs::ipvs::hostnl;

TEST_CASE("MessageBuffer packs messages and attributes with netlink alignment", "[netlink]") {
    MessageBuffer b;
    b.begin(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE);
    ifaddrmsg m{};
    m.ifa_family = 2;
    m.ifa_prefixlen = 32;
    b.putHeader(m);
    const unsigned char addr[4] = {10, 96, 0, 1};
    b.putAttr(IFA_LOCAL, addr, sizeof addr);
    b.putString(IFA_LABEL, "kube");  // 5 bytes with its NUL: padded to 8
    b.end();
    b.begin(RTM_DELADDR, NLM_F_ACK);
    b.putHeader(m);
    const auto nest = b.beginNest(IFA_CACHEINFO);
    b.putU32(1, 7);
    b.endNest(nest);
    b.end();

    REQUIRE(b.count() == 2);
    const nlmsghdr* first = b.message(0);
    CHECK(first->nlmsg_type == RTM_NEWADDR);
    CHECK(first->nlmsg_flags == (NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE));
    CHECK(first->nlmsg_len == NLMSG_LENGTH(sizeof(ifaddrmsg)) + 8 + 12);

    std::vector<const nlattr*> tb(IFA_MAX + 1);
    REQUIRE(parseAttrs(first, sizeof(ifaddrmsg), tb));
    REQUIRE(tb[IFA_LOCAL] != nullptr);
    CHECK(attrLen(tb[IFA_LOCAL]) == 4);
    CHECK(std::memcmp(attrData(tb[IFA_LOCAL]), addr, 4) == 0);
    REQUIRE(tb[IFA_LABEL] != nullptr);
    CHECK(attrString(tb[IFA_LABEL]) == "kube");
    CHECK(tb[IFA_ADDRESS] == nullptr);

    // The second message starts right after the first, and the span covers both.
    const nlmsghdr* second = b.message(1);
    CHECK(reinterpret_cast<const std::uint8_t*>(second) ==
          reinterpret_cast<const std::uint8_t*>(first) + NLMSG_ALIGN(first->nlmsg_len));
    CHECK(b.span(0, 1) == NLMSG_ALIGN(first->nlmsg_len) + NLMSG_ALIGN(second->nlmsg_len));
    REQUIRE(parseAttrs(second, sizeof(ifaddrmsg), tb));
    REQUIRE(tb[IFA_CACHEINFO] != nullptr);
    CHECK((tb[IFA_CACHEINFO]->nla_type & NLA_F_NESTED) != 0);
    std::vector<const nlattr*> inner(2);
    parseNested(tb[IFA_CACHEINFO], inner);
    REQUIRE(inner[1] != nullptr);
    CHECK(attrU32(inner[1]) == 7);

    // A copied message keeps its bytes.
    MessageBuffer c;
    c.append(second);
    REQUIRE(c.count() == 1);
    CHECK(std::memcmp(c.message(0), second, second->nlmsg_len) == 0);
}

TEST_CASE("a truncated message has no attributes", "[netlink]") {
    nlmsghdr h{};
    h.nlmsg_len = sizeof h;
    std::vector<const nlattr*> tb(4, reinterpret_cast<const nlattr*>(&h));
    CHECK_FALSE(parseAttrs(&h, sizeof(ifaddrmsg), tb));
    CHECK(tb[1] == nullptr);
}

TEST_CASE("describe() adds the kernel's extended ack", "[netlink]") {
    Status s;
    s.error = ENETDOWN;
    s.extack = "Nexthop device is not up";
    CHECK(describe(s) == "Network is down: Nexthop device is not up");
    s.extack.clear();
    s.error = EEXIST;
    CHECK(describe(s) == "File exists");
}

TEST_CASE("a dump the kernel marks interrupted is retried, and an error after three", "[netlink]") {
    // Each try collects into `got`; restart drops the last try's entries.
    std::vector<int> got;
    int tries = 0;
    const int interruptedTries = GENERATE(0, 1, 2, 3, 4);
    INFO("interrupted tries: " << interruptedTries);
    const auto st = dumpConsistent([&] { got.clear(); },
                                   [&] {
                                       ++tries;
                                       got.push_back(tries);
                                       Status s;
                                       s.interrupted = tries <= interruptedTries;
                                       return s;
                                   });
    if (interruptedTries < 3) {
        CHECK(st.ok());
        CHECK(tries == interruptedTries + 1);
        CHECK(got == std::vector<int>{tries});  // only the consistent try's entries
    } else {
        // Still changing on the third try: not a table to act on.
        CHECK(tries == 3);
        CHECK(st.error == EAGAIN);
        CHECK(describe(st).find("the table changed during each of 3 dumps") != std::string::npos);
    }
}

TEST_CASE("a failed dump is not retried", "[netlink]") {
    int tries = 0;
    const auto st = dumpConsistent([] {},
                                   [&] {
                                       ++tries;
                                       Status s;
                                       s.error = EPERM;
                                       s.interrupted = true;
                                       return s;
                                   });
    CHECK(tries == 1);
    CHECK(st.error == EPERM);
}
