// Object decoding and validation (k8s-client/decode.h), and the streaming list parser
// (k8s-client/list_parser.h) that feeds it.
//
// Input: byte 0 picks the mode, byte 1 seeds the chunking, the rest is JSON.
//   mode & 3: Service, EndpointSlice, Node, or all three
//   mode & 4: the rest is a list response, parsed by ListParser; else one object
// Invariants:
//  * an accepted object is valid (k8s_checks.h: IPs and CIDRs canonical, ports 1..65535,
//    known protocols, families that match the slice's addressType, ...), decodes the same
//    twice, and its own re-encoding decodes to an equal object with nothing dropped;
//  * a rejected object carries a rejection and no object;
//  * ListParser: the same items, kind, resourceVersion, continue token and verdict whatever
//    the chunking; a parser reset after any prefix behaves like a fresh one; a list that
//    Boost.JSON's own parser accepts is accepted, with the same items.
#include <boost/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "k8s-client/decode.h"
#include "k8s-client/list_parser.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/k8s_checks.h"

namespace kipvs::fuzz {

namespace {

void decodeAs(int kind, const json::value& v) {
    if (kind == 0 || kind == 3) {
        decodeAndCheck<k8s::Service>(v);
    }
    if (kind == 1 || kind == 3) {
        decodeAndCheck<k8s::EndpointSlice>(v);
    }
    if (kind == 2 || kind == 3) {
        decodeAndCheck<k8s::Node>(v);
    }
}

struct ListRun {
    bool fed = true;
    bool finished = false;
    std::string error;
    std::string kind;
    std::string rv;
    std::string cont;
    std::size_t count = 0;
    std::vector<std::string> items;  // serialized

    bool operator==(const ListRun&) const = default;
};

ListRun runList(k8s::ListParser& p, std::vector<json::value>& out,
                const std::vector<std::string_view>& parts) {
    ListRun r;
    for (auto part : parts) {
        if (!p.feed(part)) {
            r.fed = false;
            break;
        }
    }
    r.finished = r.fed && p.finish();
    r.error = p.error();
    FUZZ_CHECK(r.finished == r.error.empty());
    if (r.finished) {
        r.kind = p.kind();
        r.rv = p.resourceVersion();
        r.cont = p.continueToken();
        FUZZ_CHECK(!r.rv.empty());
    }
    r.count = p.items();
    for (const auto& v : out) {
        r.items.push_back(json::serialize(v));
    }
    FUZZ_CHECK(r.count == r.items.size());
    return r;
}

std::string describe(const ListRun& r) {
    return std::string(r.fed ? "fed" : "not fed") + (r.finished ? " finished" : "") + " \"" +
           r.error + "\" kind=" + r.kind + " rv=" + r.rv + " continue=" + r.cont + " " +
           std::to_string(r.count) + " items" +
           (r.items.empty() ? std::string() : ", last " + r.items.back().substr(0, 200));
}

std::size_t countOf(std::string_view s, std::string_view what) {
    std::size_t n = 0;
    for (auto pos = s.find(what); pos != std::string_view::npos; pos = s.find(what, pos + 1)) {
        ++n;
    }
    return n;
}

void listMode(int kind, std::string_view text, Choices& c) {
    std::vector<json::value> chunkedItems;
    k8s::ListParser chunked([&](json::value&& v) { chunkedItems.push_back(std::move(v)); });
    // Whatever a previous response left behind must not leak into the next one.
    const std::size_t junk = c.range(0, text.size());
    for (auto part : chunks(text.substr(0, junk), c, 7)) {
        if (!chunked.feed(part)) {
            break;
        }
    }
    chunked.reset();
    chunkedItems.clear();
    const ListRun a = runList(chunked, chunkedItems, chunks(text, c, c.range(1, 64)));

    std::vector<json::value> wholeItems;
    k8s::ListParser whole([&](json::value&& v) { wholeItems.push_back(std::move(v)); });
    const ListRun b = runList(whole, wholeItems, {text});
    FUZZ_CHECK_MSG(a == b, describe(a) + " / " + describe(b));

    // Against Boost.JSON's DOM parser with the same depth limit. Duplicate or escaped keys
    // make the two legitimately differ ("items" twice: the DOM keeps one), so those inputs
    // are only checked for self-consistency above.
    json::parse_options opts;
    opts.max_depth = 128;
    json::error_code ec;
    const json::value dom = json::parse(json::string_view(text.data(), text.size()), ec, {}, opts);
    const bool comparable = countOf(text, "\"items\"") <= 1 && countOf(text, "\\u") == 0 &&
                            countOf(text, "\"metadata\"") <= 1 &&
                            countOf(text, "\"resourceVersion\"") <= 1;
    if (comparable && !ec && dom.is_object()) {
        const auto& top = dom.get_object();
        std::vector<std::string> expect;
        if (const auto* items = top.if_contains("items"); items != nullptr && items->is_array()) {
            for (const auto& v : items->get_array()) {
                expect.push_back(json::serialize(v));
            }
        }
        FUZZ_CHECK_MSG(b.fed, b.error);
        FUZZ_CHECK(b.items == expect);
        const auto* meta = top.if_contains("metadata");
        const auto* rv = meta != nullptr && meta->is_object()
                             ? meta->get_object().if_contains("resourceVersion")
                             : nullptr;
        const bool hasRv = rv != nullptr && rv->is_string() && !rv->get_string().empty();
        FUZZ_CHECK_MSG(b.finished == hasRv, b.error);
    }
    if (b.finished) {
        FUZZ_CHECK(!ec && dom.is_object());
    }
    for (const auto& v : wholeItems) {
        decodeAs(kind, v);
    }
}

}  // namespace

int objects(const std::uint8_t* data, std::size_t size) {
    if (size < 2) {
        return 0;
    }
    const int mode = data[0];
    Choices c(data[1]);
    const std::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);
    if ((mode & 4) != 0) {
        listMode(mode & 3, text, c);
        return 0;
    }
    // As the reflector parses a watch line: Boost.JSON's defaults.
    json::error_code ec;
    const json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
    if (!ec) {
        decodeAs(mode & 3, v);
    }
    return 0;
}

}  // namespace kipvs::fuzz

#ifndef KIPVS_FUZZ_REGRESSION
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return kipvs::fuzz::objects(data, size);
}
#endif
