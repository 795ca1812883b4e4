// ipsets through libipset, in-process: the kernel's ipset netlink protocol with libipset's own
// encoding and error texts, and no `ipset` binary (kube-proxy execs it once per entry).
//
// - Entries are handed to libipset as values (address bytes, protocol number, port), not as
//   text to parse, so nothing depends on /etc/protocols (kubernetes#68703).
// - apply() uses libipset's restore mode: consecutive adds (or deletes) to one set share one
//   netlink message, about a hundred entries per message. The kernel stops a message at the
//   first entry it refuses and names it by line number; we record that entry's error and
//   resend the rest, so one bad entry (e.g. a full set) does not sink the others.
// - Set names and headers, which libipset prints, go to a string through a custom print
//   function, never to stdout. Members are not read that way: libipset's printer looks up every
//   member's protocol in /etc/protocols. list() decodes the kernel's dump itself instead
//   (ipset_netlink.h), on a netlink socket of its own.
//
// libipset's netlink socket comes from libmnl without close-on-exec; LibIpset sets the flag on
// it when it opens a session.
//
// libipset keeps process-wide state without a lock: its registry of set types and a cache of
// set name -> type, which every add and delete reads and which ending *any* session frees.
// So one LibIpset may be open in the process at a time (open() refuses a second), used from
// one thread at a time; other threads read sets with a NetlinkIpsetLister, which does not use
// libipset. The cache entry of a set is dropped before each apply() so that a set recreated
// by someone else with another type is seen as it is now.
#pragma once

#include <memory>

#include "ipvs/ipset.h"

struct ipset_session;

namespace kipvs::ipvs {

namespace hostnl {
class Socket;
}

// Lists sets through a netlink socket of its own (ipset_netlink.h), without libipset: any
// number may be open, on any threads, beside the one LibIpset.
class NetlinkIpsetLister final : public IpsetLister {
  public:
    static Result<std::unique_ptr<NetlinkIpsetLister>> open();
    ~NetlinkIpsetLister() override;
    Result<std::size_t> visit(const std::string& name, const MemberVisitor& fn) override;

  private:
    explicit NetlinkIpsetLister(std::unique_ptr<hostnl::Socket> s);
    std::unique_ptr<hostnl::Socket> nfnl_;
};

class LibIpset final : public Ipset {
  public:
    // Loads libipset's set types and checks that the kernel speaks the ipset protocol. Fails
    // while another LibIpset is open.
    static Result<std::unique_ptr<LibIpset>> open();
    ~LibIpset() override;

    Result<std::vector<std::string>> setNames() override;
    Result<std::optional<SetInfo>> info(const std::string& name) override;
    Result<void> create(const SetSpec& spec) override;
    Result<std::size_t> visit(const std::string& name, const MemberVisitor& fn) override;
    std::vector<Result<void>> apply(const std::string& name, SetType type,
                                    std::span<const SetOp> ops) override;
    Result<void> flush(const std::string& name) override;
    Result<void> destroy(const std::string& name) override;
    Result<void> swap(const std::string& a, const std::string& b) override;

    // Appends libipset's printed output; called through libipset's print hook.
    void appendOutput(const char* text, std::size_t len) { out_.append(text, len); }

  private:
    struct SessionDeleter {
        void operator()(ipset_session* s) const;
    };
    LibIpset() = default;

    Result<void> newSession();
    void recover();
    // The `ipset list -t` text of a set, or nullopt if there is no set of that name.
    Result<std::optional<std::string>> headerText(const std::string& name);
    // Runs a command prepared in the session's data; on failure returns libipset's message.
    Result<void> run(int cmd, const std::string& what);
    // Clears the line number, data and report the previous command left in the session.
    void prepare();
    // libipset's report text without its trailing newline, and resets the report.
    std::string takeReport();
    Result<std::string> listText(const std::string& name, bool headerOnly);

    // Declared first, destroyed last: the instance count drops after the session has ended.
    struct Registration {
        Registration() = default;
        Registration(const Registration&) = delete;
        Registration& operator=(const Registration&) = delete;
        ~Registration();
        bool held = false;
    } registration_;
    std::unique_ptr<ipset_session, SessionDeleter> session_;
    // Listings are read without libipset.
    std::unique_ptr<NetlinkIpsetLister> lister_;
    std::string out_;
};

}  // namespace kipvs::ipvs
