#include "k8s-client/list_parser.h"

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

namespace kipvs::k8s {

namespace json = boost::json;
using json::error_code;

namespace {

// basic_parser handler. Depth 1 is the top-level object. Every top-level member value, and
// every element of the top-level "items" array, is built with a value_stack and released as
// soon as it is complete.
class Handler {
  public:
    static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

    explicit Handler(ListParser::ItemFn onItem) : onItem_(std::move(onItem)) {}

    // Everything: a response cut off inside a scalar left pendingScalar_ and capturingItem_
    // set, and the next response's first top-level scalar was then delivered as an item.
    void reset() {
        st_.reset();
        depth_ = 0;
        capture_ = 0;
        inItems_ = false;
        capturingItem_ = false;
        partial_ = false;
        pendingScalar_ = false;
        key_.clear();
        top_ = json::object();
        items_ = 0;
    }

    bool on_document_begin(error_code&) { return true; }
    bool on_document_end(error_code&) { return true; }

    bool on_object_begin(error_code& ec) { return beginContainer(ec, false); }
    bool on_array_begin(error_code& ec) { return beginContainer(ec, true); }

    bool on_object_end(std::size_t n, error_code&) {
        if (capture_ > 0) {
            st_.push_object(n);
            endCaptured();
        } else {
            depth_ = 0;  // end of the top-level object
        }
        return true;
    }

    bool on_array_end(std::size_t n, error_code&) {
        if (capture_ > 0) {
            st_.push_array(n);
            endCaptured();
        } else {
            inItems_ = false;
        }
        return true;
    }

    bool on_key_part(json::string_view s, std::size_t, error_code&) {
        if (capture_ > 0) {
            st_.push_chars(s);
        } else {
            key_.append(s.data(), s.size());
        }
        return true;
    }

    bool on_key(json::string_view s, std::size_t, error_code&) {
        if (capture_ > 0) {
            st_.push_key(s);
        } else {
            key_.append(s.data(), s.size());
        }
        return true;
    }

    bool on_string_part(json::string_view s, std::size_t, error_code& ec) {
        if (!scalar(ec)) {
            return false;
        }
        st_.push_chars(s);
        partial_ = true;
        return true;
    }

    bool on_string(json::string_view s, std::size_t, error_code& ec) {
        if (!partial_ && !scalar(ec)) {
            return false;
        }
        partial_ = false;
        st_.push_string(s);
        return endScalar();
    }

    bool on_number_part(json::string_view, error_code&) { return true; }
    bool on_int64(std::int64_t i, json::string_view, error_code& ec) {
        return scalar(ec) && (st_.push_int64(i), endScalar());
    }
    bool on_uint64(std::uint64_t u, json::string_view, error_code& ec) {
        return scalar(ec) && (st_.push_uint64(u), endScalar());
    }
    bool on_double(double d, json::string_view, error_code& ec) {
        return scalar(ec) && (st_.push_double(d), endScalar());
    }
    bool on_bool(bool b, error_code& ec) { return scalar(ec) && (st_.push_bool(b), endScalar()); }
    bool on_null(error_code& ec) { return scalar(ec) && (st_.push_null(), endScalar()); }
    bool on_comment_part(json::string_view, error_code&) { return true; }
    bool on_comment(json::string_view, error_code&) { return true; }

    const json::object& top() const { return top_; }
    std::size_t items() const { return items_; }

  private:
    bool beginContainer(error_code& ec, bool array) {
        if (capture_ > 0) {
            ++capture_;
            return true;
        }
        if (depth_ == 0) {
            if (array) {
                ec = json::error::syntax;  // a list response is an object
                return false;
            }
            depth_ = 1;
            return true;
        }
        if (inItems_) {
            startCapture(true);
            return true;
        }
        // A top-level member.
        if (array && key_ == "items") {
            inItems_ = true;
            resetKey();
            return true;
        }
        startCapture(false);
        return true;
    }

    void startCapture(bool item) {
        st_.reset();
        capture_ = 1;
        capturingItem_ = item;
    }

    // A scalar outside any capture: a top-level member or an item of its own.
    bool scalar(error_code& ec) {
        if (capture_ > 0) {
            return true;
        }
        if (depth_ == 0) {
            ec = json::error::syntax;
            return false;
        }
        if (!pendingScalar_) {
            st_.reset();
            pendingScalar_ = true;
            capturingItem_ = inItems_;
        }
        return true;
    }

    bool endScalar() {
        if (capture_ > 0) {
            return true;
        }
        pendingScalar_ = false;
        deliver();
        return true;
    }

    void endCaptured() {
        if (--capture_ == 0) {
            deliver();
        }
    }

    void deliver() {
        json::value v = st_.release();
        if (capturingItem_) {
            ++items_;
            onItem_(std::move(v));
        } else {
            top_[key_] = std::move(v);
            resetKey();
        }
    }

    void resetKey() { key_.clear(); }

    ListParser::ItemFn onItem_;
    json::value_stack st_;
    json::object top_;
    std::string key_;
    std::size_t depth_ = 0;
    std::size_t capture_ = 0;
    std::size_t items_ = 0;
    bool inItems_ = false;
    bool capturingItem_ = false;
    bool partial_ = false;
    bool pendingScalar_ = false;
};

json::parse_options parseOptions() {
    json::parse_options o;
    o.max_depth = 128;
    return o;
}

}  // namespace

struct ListParser::Impl {
    explicit Impl(ItemFn fn) : parser(parseOptions(), std::move(fn)) {}
    json::basic_parser<Handler> parser;
    std::string error;
    std::string kind;
    std::string rv;
    std::string cont;
    bool failed = false;
};

ListParser::ListParser(ItemFn onItem) : impl_(std::make_unique<Impl>(std::move(onItem))) {}
ListParser::~ListParser() = default;

void ListParser::reset() {
    impl_->parser.reset();
    impl_->parser.handler().reset();
    impl_->error.clear();
    impl_->kind.clear();
    impl_->rv.clear();
    impl_->cont.clear();
    impl_->failed = false;
}

bool ListParser::feed(std::string_view bytes) {
    if (impl_->failed) {
        return false;
    }
    error_code ec;
    // Exceptions here would come from allocation failure only; Boost.JSON reports syntax
    // errors through `ec`.
    const std::size_t n = impl_->parser.write_some(true, bytes.data(), bytes.size(), ec);
    if (ec || n != bytes.size()) {
        impl_->failed = true;
        impl_->error = ec ? ec.message() : "trailing data after the list";
        return false;
    }
    return true;
}

bool ListParser::finish() {
    if (impl_->failed) {
        return false;
    }
    error_code ec;
    impl_->parser.write_some(false, nullptr, 0, ec);
    if (ec) {
        impl_->failed = true;
        impl_->error = ec.message();
        return false;
    }
    const auto& top = impl_->parser.handler().top();
    if (const auto* k = top.if_contains("kind"); k != nullptr && k->is_string()) {
        impl_->kind = std::string(k->get_string());
    }
    if (const auto* m = top.if_contains("metadata"); m != nullptr && m->is_object()) {
        const auto& mo = m->get_object();
        if (const auto* rv = mo.if_contains("resourceVersion"); rv != nullptr && rv->is_string()) {
            impl_->rv = std::string(rv->get_string());
        }
        if (const auto* c = mo.if_contains("continue"); c != nullptr && c->is_string()) {
            impl_->cont = std::string(c->get_string());
        }
    }
    if (impl_->rv.empty()) {
        impl_->failed = true;
        impl_->error = "list has no metadata.resourceVersion";
        return false;
    }
    return true;
}

const std::string& ListParser::error() const {
    return impl_->error;
}
const std::string& ListParser::kind() const {
    return impl_->kind;
}
const std::string& ListParser::resourceVersion() const {
    return impl_->rv;
}
const std::string& ListParser::continueToken() const {
    return impl_->cont;
}
std::size_t ListParser::items() const {
    return impl_->parser.handler().items();
}

}  // namespace kipvs::k8s
