#include "ipvs/libipset.h"

#include "ipvs/host_netlink.h"
#include "ipvs/ipset_netlink.h"

#include <libipset/data.h>
#include <libipset/linux_ip_set.h>
#include <libipset/nfproto.h>
#include <libipset/session.h>
#include <libipset/types.h>

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <set>

namespace kipvs::ipvs {

namespace {

// libipset's print hook: everything it would print lands in the LibIpset's buffer.
__attribute__((format(printf, 3, 4))) int printToBuffer(ipset_session* /*session*/, void* p,
                                                        const char* fmt, ...) {
    std::array<char, 1024> small{};
    va_list ap;
    va_start(ap, fmt);
    // va_start initializes `ap`. clang-analyzer 14 says otherwise when clang-tidy checks this
    // file after others in one process, as check-style.sh batches them: a false positive.
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    const int n = std::vsnprintf(small.data(), small.size(), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return n;
    }
    auto* self = static_cast<LibIpset*>(p);
    if (static_cast<std::size_t>(n) < small.size()) {
        self->appendOutput(small.data(), static_cast<std::size_t>(n));
        return n;
    }
    // Too long for the stack buffer: format again into one of the right size.
    std::string big(static_cast<std::size_t>(n) + 1, '\0');
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): as above
    std::vsnprintf(big.data(), big.size(), fmt, ap);
    va_end(ap);
    self->appendOutput(big.data(), static_cast<std::size_t>(n));
    return n;
}

// Everything the kernel or libipset refuses: libipset reports text, not an errno.
Error ipsetError(const std::string& what, const std::string& report) {
    return {std::error_code(EIO, std::generic_category()), what + ": " + report};
}

bool validName(const std::string& name) {
    return !name.empty() && name.size() < IPSET_MAXNAMELEN;
}

Error badName(const std::string& what, const std::string& name) {
    return Error::invalid(what + ": invalid set name \"" + name + "\" (1 to " +
                          std::to_string(IPSET_MAXNAMELEN - 1) + " characters)");
}

std::string familyWord(net::Family f) {
    return f == net::Family::V4 ? "inet" : "inet6";
}

std::vector<std::string_view> words(std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') {
            ++i;
        }
        const std::size_t start = i;
        while (i < line.size() && line[i] != ' ') {
            ++i;
        }
        if (i > start) {
            out.push_back(line.substr(start, i - start));
        }
    }
    return out;
}

std::vector<std::string_view> lines(std::string_view text) {
    std::vector<std::string_view> out;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        out.push_back(text.substr(0, nl));
        if (nl == std::string_view::npos) {
            break;
        }
        text.remove_prefix(nl + 1);
    }
    return out;
}

template <class T>
bool parseNumber(std::string_view s, T& v) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size();
}

// What `ipset list -t` says about a set, with the type as text so that a set of a type we do
// not use can still be named in an error.
struct RawInfo {
    std::string type;
    std::string family;  // "inet", "inet6"; empty for bitmap:port
    std::uint32_t maxElem = 0;
    std::uint32_t entries = 0;
};

std::optional<RawInfo> parseHeader(std::string_view text) {
    RawInfo info;
    bool haveType = false;
    for (auto line : lines(text)) {
        constexpr std::string_view kType = "Type: ";
        constexpr std::string_view kHeader = "Header: ";
        constexpr std::string_view kEntries = "Number of entries: ";
        if (line.starts_with(kType)) {
            info.type = std::string(line.substr(kType.size()));
            haveType = true;
        } else if (line.starts_with(kHeader)) {
            const auto w = words(line.substr(kHeader.size()));
            for (std::size_t i = 0; i + 1 < w.size(); ++i) {
                if (w[i] == "family") {
                    info.family = std::string(w[i + 1]);
                } else if (w[i] == "maxelem") {
                    parseNumber(w[i + 1], info.maxElem);
                } else if (w[i] == "range") {
                    // bitmap:port holds exactly its range.
                    const auto dash = w[i + 1].find('-');
                    std::uint32_t from = 0;
                    std::uint32_t to = 0;
                    if (dash != std::string_view::npos &&
                        parseNumber(w[i + 1].substr(0, dash), from) &&
                        parseNumber(w[i + 1].substr(dash + 1), to) && to >= from) {
                        info.maxElem = to - from + 1;
                    }
                }
            }
        } else if (line.starts_with(kEntries)) {
            parseNumber(line.substr(kEntries.size()), info.entries);
        }
    }
    if (!haveType) {
        return std::nullopt;
    }
    return info;
}

// Does the entry's address family fit the set's? Sets of family inet take IPv4 entries only.
std::optional<net::Family> entryFamily(SetType t, const SetEntry& e) {
    switch (t) {
        case SetType::HashIp:
        case SetType::HashIpPort:
            return e.ip.family();
        case SetType::HashIpPortIp:
            if (e.ip2.family() != e.ip.family()) {
                return std::nullopt;
            }
            return e.ip.family();
        case SetType::HashIpPortNet:
            if (e.net().family() != e.ip.family()) {
                return std::nullopt;
            }
            return e.ip.family();
        case SetType::HashNet:
            return e.net().family();
        case SetType::BitmapPort:
            break;
    }
    return std::nullopt;
}

// "Error in line 17: Hash is full, cannot add more elements" -> (17, "Hash is full, ...").
std::pair<std::uint32_t, std::string> splitLineNo(const std::string& report) {
    constexpr std::string_view kPrefix = "Error in line ";
    std::string_view r(report);
    if (!r.starts_with(kPrefix)) {
        return {0, report};
    }
    r.remove_prefix(kPrefix.size());
    const auto colon = r.find(": ");
    std::uint32_t line = 0;
    if (colon == std::string_view::npos || !parseNumber(r.substr(0, colon), line)) {
        return {0, report};
    }
    return {line, std::string(r.substr(colon + 2))};
}

std::set<int> openDescriptors() {
    std::set<int> fds;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) {
        return fds;
    }
    const int self = ::dirfd(dir);
    while (const dirent* e = ::readdir(dir)) {
        int fd = -1;
        const std::string_view name(e->d_name);
        if (parseNumber(name, fd) && fd != self) {
            fds.insert(fd);
        }
    }
    ::closedir(dir);
    return fds;
}

}  // namespace

void LibIpset::SessionDeleter::operator()(ipset_session* s) const {
    ipset_session_fini(s);
}

namespace {
std::atomic<bool> libipsetInUse{false};
}  // namespace

LibIpset::Registration::~Registration() {
    if (held) {
        libipsetInUse.store(false);
    }
}

LibIpset::~LibIpset() = default;

Result<std::unique_ptr<LibIpset>> LibIpset::open() {
    std::unique_ptr<LibIpset> self(new LibIpset());
    if (libipsetInUse.exchange(true)) {
        return Error{std::make_error_code(std::errc::device_or_resource_busy),
                     "libipset: another session is open in this process (libipset's state is "
                     "process-wide; read sets with NetlinkIpsetLister)"};
    }
    self->registration_.held = true;
    // Registers libipset's set types once per process (it ignores later calls).
    ipset_load_types();
    if (auto r = self->newSession(); !r) {
        return r.error();
    }
    auto lister = NetlinkIpsetLister::open();
    if (!lister) {
        return lister.error();
    }
    self->lister_ = std::move(*lister);
    return self;
}

NetlinkIpsetLister::NetlinkIpsetLister(std::unique_ptr<hostnl::Socket> s) : nfnl_(std::move(s)) {}
NetlinkIpsetLister::~NetlinkIpsetLister() = default;

Result<std::unique_ptr<NetlinkIpsetLister>> NetlinkIpsetLister::open() {
    auto sock = hostnl::Socket::open(NETLINK_NETFILTER);
    if (!sock) {
        return sock.error().context("ipset netlink socket");
    }
    return std::unique_ptr<NetlinkIpsetLister>(
        new NetlinkIpsetLister(std::make_unique<hostnl::Socket>(std::move(*sock))));
}

Result<void> LibIpset::newSession() {
    ipset_session* s = ipset_session_init(printToBuffer, this);
    if (s == nullptr) {
        return Error::sys(ENOMEM, "ipset session");
    }
    session_.reset(s);
    // -exist semantics for create, add, del and destroy: creating an identical set, adding a
    // present entry, deleting an absent one and destroying a missing set all succeed.
    ipset_envopt_set(s, IPSET_ENV_EXIST);
    // The protocol check opens libipset's netlink socket, which libmnl creates without
    // close-on-exec: find it among the descriptors that appeared, so that children we or
    // anyone else in the process spawns do not inherit it.
    const auto before = openDescriptors();
    const int rc = ipset_cmd(s, IPSET_CMD_NONE, 0);
    for (const int fd : openDescriptors()) {
        if (!before.contains(fd)) {
            const int flags = ::fcntl(fd, F_GETFD);
            if (flags >= 0) {
                ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
            }
        }
    }
    if (rc < 0) {
        return ipsetError("ipset protocol check", takeReport());
    }
    takeReport();  // a protocol-version warning, if any
    return ok();
}

void LibIpset::recover() {
    // After a failed dump (a list of a missing set) or a failed private query, libipset's
    // socket is left with a reply it did not consume, and every later command fails with
    // "Protocol error" and no message. A fresh session (a new socket) is the way out.
    (void)newSession();
}

void LibIpset::prepare() {
    // libipset keeps the line number of the last restore-mode command and prefixes every later
    // error with it ("Error in line 57: ..."), even for commands that are not restore mode.
    ipset_session_lineno(session_.get(), 0);
    ipset_data_reset(ipset_session_data(session_.get()));
    ipset_session_report_reset(session_.get());
}

std::string LibIpset::takeReport() {
    std::string r = ipset_session_report_msg(session_.get());
    while (!r.empty() && (r.back() == '\n' || r.back() == ' ')) {
        r.pop_back();
    }
    ipset_session_report_reset(session_.get());
    return r;
}

Result<void> LibIpset::run(int cmd, const std::string& what) {
    if (ipset_cmd(session_.get(), static_cast<enum ipset_cmd>(cmd), 0) < 0) {
        auto e = ipsetError(what, splitLineNo(takeReport()).second);
        recover();
        return e;
    }
    takeReport();
    return ok();
}

Result<std::string> LibIpset::listText(const std::string& name, bool headerOnly) {
    ipset_session* s = session_.get();
    prepare();
    out_.clear();
    ipset_session_output(s, IPSET_LIST_PLAIN);
    if (name.empty()) {
        ipset_envopt_set(s, IPSET_ENV_LIST_SETNAME);
    } else {
        ipset_session_data_set(s, IPSET_SETNAME, name.c_str());
    }
    if (headerOnly) {
        ipset_envopt_set(s, IPSET_ENV_LIST_HEADER);
    }
    const int r = ipset_cmd(s, IPSET_CMD_LIST, 0);
    ipset_envopt_unset(s, IPSET_ENV_LIST_SETNAME);
    ipset_envopt_unset(s, IPSET_ENV_LIST_HEADER);
    if (r < 0) {
        auto e = ipsetError(name.empty() ? "ipset list" : "ipset list " + name,
                            splitLineNo(takeReport()).second);
        recover();
        return e;
    }
    takeReport();
    std::string text;
    text.swap(out_);
    return text;
}

Result<std::optional<std::string>> LibIpset::headerText(const std::string& name) {
    // libipset tells a missing set only by its message text, and a failed listing upsets its
    // session: look the name up among all names first.
    auto names = setNames();
    if (!names) {
        return names.error();
    }
    if (std::find(names->begin(), names->end(), name) == names->end()) {
        return std::optional<std::string>();
    }
    auto text = listText(name, true);
    if (!text) {
        return text.error();
    }
    return std::optional<std::string>(std::move(*text));
}

Result<std::vector<std::string>> LibIpset::setNames() {
    auto text = listText("", false);
    if (!text) {
        return text.error();
    }
    std::vector<std::string> out;
    for (auto line : lines(*text)) {
        if (!line.empty()) {
            out.emplace_back(line);
        }
    }
    return out;
}

Result<std::optional<SetInfo>> LibIpset::info(const std::string& name) {
    const std::string what = "ipset info " + name;
    if (!validName(name)) {
        return badName(what, name);
    }
    auto text = headerText(name);
    if (!text) {
        return text.error();
    }
    if (!*text) {
        return std::optional<SetInfo>();
    }
    auto raw = parseHeader(**text);
    if (!raw) {
        return Error::protocol(what + ": cannot read the listing header");
    }
    auto type = parseSetType(raw->type);
    if (!type) {
        return Error::invalid(what + ": set has type " + raw->type +
                              ", which kube-ipvs does not use");
    }
    SetInfo info;
    info.name = name;
    info.type = *type;
    info.family = raw->family == "inet6" ? net::Family::V6 : net::Family::V4;
    info.maxElem = raw->maxElem;
    info.entries = raw->entries;
    return std::optional<SetInfo>(info);
}

Result<void> LibIpset::create(const SetSpec& spec) {
    const bool bitmap = spec.type == SetType::BitmapPort;
    std::string what = "ipset create " + spec.name + " " + std::string(setTypeName(spec.type));
    if (bitmap) {
        what += " range " + std::to_string(spec.portFrom) + "-" + std::to_string(spec.portTo);
    } else {
        what += " family " + familyWord(spec.family) + " hashsize " +
                std::to_string(spec.hashSize) + " maxelem " + std::to_string(spec.maxElem);
    }
    if (!validName(spec.name)) {
        return badName(what, spec.name);
    }
    // An existing set: fine if it is of this type and family, an error naming both if not.
    // (Size parameters of an existing set are left as they are, as with kube-proxy's
    // "create -exist", which would otherwise fail on them.)
    auto text = headerText(spec.name);
    if (!text) {
        return text.error().context(what);
    }
    if (*text) {
        auto raw = parseHeader(**text);
        if (!raw) {
            return Error::protocol(what + ": cannot read the existing set's header");
        }
        const bool sameType = raw->type == setTypeName(spec.type);
        const bool sameFamily = bitmap || raw->family == familyWord(spec.family);
        if (sameType && sameFamily) {
            return ok();
        }
        std::string existing = raw->type;
        if (!raw->family.empty()) {
            existing += " family " + raw->family;
        }
        return Error{std::error_code(EEXIST, std::generic_category()),
                     what + ": a set of that name exists with type " + existing};
    }

    ipset_session* s = session_.get();
    prepare();
    const std::string typeName(setTypeName(spec.type));
    ipset_session_data_set(s, IPSET_SETNAME, spec.name.c_str());
    ipset_session_data_set(s, IPSET_OPT_TYPENAME, typeName.c_str());
    if (!bitmap) {
        const std::uint8_t family = spec.family == net::Family::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
        ipset_session_data_set(s, IPSET_OPT_FAMILY, &family);
    }
    if (ipset_type_get(s, IPSET_CMD_CREATE) == nullptr) {
        auto e = ipsetError(what, splitLineNo(takeReport()).second);
        recover();
        return e;
    }
    if (bitmap) {
        ipset_session_data_set(s, IPSET_OPT_PORT, &spec.portFrom);
        ipset_session_data_set(s, IPSET_OPT_PORT_TO, &spec.portTo);
    } else {
        ipset_session_data_set(s, IPSET_OPT_HASHSIZE, &spec.hashSize);
        ipset_session_data_set(s, IPSET_OPT_MAXELEM, &spec.maxElem);
    }
    return run(IPSET_CMD_CREATE, what);
}

Result<std::size_t> LibIpset::visit(const std::string& name, const MemberVisitor& fn) {
    return lister_->visit(name, fn);
}

Result<std::size_t> NetlinkIpsetLister::visit(const std::string& name, const MemberVisitor& fn) {
    const std::string what = "ipset list " + name;
    if (!validName(name)) {
        return badName(what, name);
    }
    hostnl::MessageBuffer b;
    ipsetnl::listRequest(b, name);
    ipsetnl::ListCollector members(what, fn);
    const auto st = nfnl_->exchange(b, [&](std::size_t, const nlmsghdr* m) { members.add(m); })[0];
    if (st.error == ENOENT) {
        return Error{std::error_code(ENOENT, std::generic_category()),
                     what + ": the set does not exist"};
    }
    if (!st.ok()) {
        return Error{std::error_code(st.error, std::generic_category()),
                     what + ": " + hostnl::describe(st)};
    }
    return members.finish();
}

std::vector<Result<void>> LibIpset::apply(const std::string& name, SetType type,
                                          std::span<const SetOp> ops) {
    std::vector<Result<void>> out(ops.size());
    if (ops.empty()) {
        return out;
    }
    const auto opText = [&](std::size_t i) {
        return std::string(ops[i].kind == SetOpKind::Add ? "ipset add " : "ipset del ") + name +
               " " + ops[i].entry.toString(type);
    };
    const auto failAll = [&](std::size_t from, const std::string& report) {
        for (std::size_t i = from; i < ops.size(); ++i) {
            if (out[i]) {
                out[i] = ipsetError(opText(i), report);
            }
        }
    };
    if (!validName(name)) {
        for (std::size_t i = 0; i < ops.size(); ++i) {
            out[i] = badName(opText(i), name);
        }
        return out;
    }

    ipset_session* s = session_.get();
    ipset_data* data = ipset_session_data(s);
    // libipset caches set name -> type for the life of the process; drop our set's entry so
    // that the type and family come from the kernel now (a set recreated by someone else
    // with another type would otherwise get entries encoded for the old one).
    ipset_cache_del(name.c_str());
    prepare();
    ipset_session_data_set(s, IPSET_SETNAME, name.c_str());
    const ipset_type* kernelType = ipset_type_get(s, IPSET_CMD_ADD);
    if (kernelType == nullptr) {
        failAll(0, splitLineNo(takeReport()).second);
        recover();
        return out;
    }
    const std::uint8_t setFamily = ipset_data_family(data);
    ipset_data_reset(data);
    // libipset asks the kernel for the set's header on every add or del it cannot answer from
    // its cache, and only "create" fills the cache: without this, each entry would cost a
    // round trip of its own.
    ipset_cache_add(name.c_str(), kernelType, setFamily);
    if (setTypeName(type) != kernelType->name) {
        failAll(0, "set has type " + std::string(kernelType->name) + ", not " +
                       std::string(setTypeName(type)));
        return out;
    }

    // Entries whose family cannot fit the set never reach the kernel.
    std::vector<bool> skip(ops.size(), false);
    if (type != SetType::BitmapPort) {
        const auto want = setFamily == NFPROTO_IPV6 ? net::Family::V6 : net::Family::V4;
        for (std::size_t i = 0; i < ops.size(); ++i) {
            const auto f = entryFamily(type, ops[i].entry);
            if (f != want) {
                skip[i] = true;
                out[i] = Error::invalid(opText(i) + ": entry does not fit a set of family " +
                                        familyWord(want));
            }
        }
    }

    const auto stage = [&](std::size_t i) -> bool {
        const SetEntry& e = ops[i].entry;
        const auto cmd = ops[i].kind == SetOpKind::Add ? IPSET_CMD_ADD : IPSET_CMD_DEL;
        ipset_session_data_set(s, IPSET_SETNAME, name.c_str());
        if (ipset_type_get(s, cmd) == nullptr) {  // answered from libipset's cache
            return false;
        }
        const auto proto = static_cast<std::uint8_t>(e.protocol);
        switch (type) {
            case SetType::HashIp:
                ipset_session_data_set(s, IPSET_OPT_IP, e.ip.data());
                break;
            case SetType::HashIpPort:
            case SetType::HashIpPortIp:
            case SetType::HashIpPortNet:
                ipset_session_data_set(s, IPSET_OPT_IP, e.ip.data());
                ipset_session_data_set(s, IPSET_OPT_PROTO, &proto);
                ipset_session_data_set(s, IPSET_OPT_PORT, &e.port);
                if (type == SetType::HashIpPortIp) {
                    ipset_session_data_set(s, IPSET_OPT_IP2, e.ip2.data());
                } else if (type == SetType::HashIpPortNet) {
                    const std::uint8_t cidr = e.netPrefix;
                    ipset_session_data_set(s, IPSET_OPT_IP2, e.ip2.data());
                    ipset_session_data_set(s, IPSET_OPT_CIDR2, &cidr);
                }
                break;
            case SetType::HashNet: {
                const std::uint8_t cidr = e.netPrefix;
                ipset_session_data_set(s, IPSET_OPT_IP, e.ip2.data());
                ipset_session_data_set(s, IPSET_OPT_CIDR, &cidr);
                break;
            }
            case SetType::BitmapPort:
                ipset_session_data_set(s, IPSET_OPT_PORT, &e.port);
                break;
        }
        // A non-zero line number puts libipset in restore mode: consecutive adds (or dels) to
        // one set are aggregated into one message, and a refused entry is reported by it.
        return ipset_cmd(s, cmd, static_cast<std::uint32_t>(i + 1)) == 0;
    };

    std::size_t start = 0;
    while (start < ops.size()) {
        bool failed = false;
        for (std::size_t i = start; i < ops.size() && !failed; ++i) {
            if (!skip[i]) {
                failed = !stage(i);
            }
        }
        if (!failed) {
            failed = ipset_commit(s) < 0;
        }
        if (!failed) {
            takeReport();
            break;
        }
        ipset_data_reset(data);
        const auto [line, text] = splitLineNo(takeReport());
        if (line == 0 || line - 1 < start || line > ops.size()) {
            // Not about one entry (the set vanished, the socket failed): we cannot tell
            // which of the remaining entries were applied.
            failAll(start, text);
            break;
        }
        // The kernel applied the entries of the failed message before this one and none after
        // it; those after go again (re-adding one that made it is harmless with -exist).
        out[line - 1] = ipsetError(opText(line - 1), text);
        skip[line - 1] = true;
        start = line;
    }
    return out;
}

Result<void> LibIpset::flush(const std::string& name) {
    const std::string what = "ipset flush " + name;
    if (!validName(name)) {
        return badName(what, name);
    }
    prepare();
    ipset_session_data_set(session_.get(), IPSET_SETNAME, name.c_str());
    return run(IPSET_CMD_FLUSH, what);
}

Result<void> LibIpset::destroy(const std::string& name) {
    const std::string what = "ipset destroy " + name;
    if (!validName(name)) {
        return badName(what, name);
    }
    prepare();
    ipset_session_data_set(session_.get(), IPSET_SETNAME, name.c_str());
    auto r = run(IPSET_CMD_DESTROY, what);
    if (!r) {
        auto names = setNames();
        if (names && std::find(names->begin(), names->end(), name) == names->end()) {
            return ok();  // already gone
        }
    }
    return r;
}

Result<void> LibIpset::swap(const std::string& a, const std::string& b) {
    const std::string what = "ipset swap " + a + " " + b;
    if (!validName(a)) {
        return badName(what, a);
    }
    if (!validName(b)) {
        return badName(what, b);
    }
    prepare();
    ipset_session_data_set(session_.get(), IPSET_SETNAME, a.c_str());
    ipset_session_data_set(session_.get(), IPSET_OPT_SETNAME2, b.c_str());
    return run(IPSET_CMD_SWAP, what);
}

}  // namespace kipvs::ipvs
