#include "k8s-client/rest.h"

#include <boost/json.hpp>

#include <algorithm>

namespace kipvs::k8s {

namespace json = boost::json;

bool ApiError::isExpired() const {
    return !transport && status == 410 &&
           (reason == "Expired" || reason == "Gone" || reason.empty());
}

bool ApiError::isTooLargeResourceVersion() const {
    if (transport || status != 504) {
        return false;
    }
    return std::find(causes.begin(), causes.end(), "ResourceVersionTooLarge") != causes.end() ||
           message.find("Too large resource version") != std::string::npos;
}

std::string ApiError::describe() const {
    if (transport) {
        return std::string(transportErrorKindName(transportKind)) + ": " + message;
    }
    std::string s = std::to_string(status);
    if (!reason.empty()) {
        s += ' ';
        s += reason;
    }
    if (!message.empty()) {
        s += ": ";
        s += message;
    }
    return s;
}

namespace {

constexpr std::size_t kMaxErrorText = 2048;
constexpr std::size_t kMaxErrorBody = 64 * 1024;

void fillFromStatus(const json::object& o, ApiError& e) {
    if (const auto* r = o.if_contains("reason"); r != nullptr && r->is_string()) {
        e.reason = std::string(r->get_string());
    }
    if (const auto* m = o.if_contains("message"); m != nullptr && m->is_string()) {
        e.message = std::string(m->get_string());
    }
    if (const auto* c = o.if_contains("code"); c != nullptr && c->is_int64() && e.status == 0) {
        e.status = static_cast<int>(c->get_int64());
    }
    const auto* d = o.if_contains("details");
    if (d != nullptr && d->is_object()) {
        if (const auto* causes = d->get_object().if_contains("causes");
            causes != nullptr && causes->is_array()) {
            for (const auto& c : causes->get_array()) {
                if (c.is_object()) {
                    if (const auto* r = c.get_object().if_contains("reason");
                        r != nullptr && r->is_string()) {
                        e.causes.emplace_back(r->get_string());
                    }
                }
            }
        }
    }
}

}  // namespace

ApiError apiErrorFromResponse(int status, std::string_view contentType, std::string_view body,
                              std::string_view retryAfterHeader) {
    ApiError e;
    e.status = status;
    e.retryAfter = parseRetryAfter(retryAfterHeader);
    bool decoded = false;
    if (contentType.substr(0, 16) == "application/json") {
        json::error_code ec;
        auto v = json::parse(json::string_view(body.data(), body.size()), ec);
        if (!ec && v.is_object()) {
            fillFromStatus(v.get_object(), e);
            e.status = status;
            decoded = true;
        }
    }
    if (!decoded) {
        std::string_view text = body.substr(0, kMaxErrorText);
        while (!text.empty() &&
               (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
            text.remove_suffix(1);
        }
        e.message = std::string(text);
    }
    return e;
}

std::optional<ApiError> apiErrorFromStatusJson(std::string_view text) {
    json::error_code ec;
    auto v = json::parse(json::string_view(text.data(), text.size()), ec);
    if (ec || !v.is_object()) {
        return std::nullopt;
    }
    ApiError e;
    fillFromStatus(v.get_object(), e);
    return e;
}

std::string queryEscape(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size() * 3);
    for (unsigned char c : s) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else if (c == ' ') {
            out.push_back('+');
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
    return out;
}

class RestClient::CallImpl : public ResponseSink, public std::enable_shared_from_this<CallImpl> {
  public:
    CallImpl(RestClient& rc, std::string target, bool watch, Duration idle, RestStream& stream)
        : rc_(rc),
          target_(std::move(target)),
          watch_(watch),
          idle_(idle),
          stream_(&stream),
          timer_(rc.clock_.makeTimer()) {}

    void cancel() {
        cancelled_ = true;
        stream_ = nullptr;
        timer_->cancel();
        req_.reset();
    }

    // Sends now, or after the rate limiter's wait (lists and gets only).
    void attempt() {
        if (!watch_ && rc_.limiter_ != nullptr) {
            const Duration wait = rc_.limiter_->reserve(rc_.clock_.now());
            if (wait > Duration::zero()) {
                timer_->start(wait, [this] { send(); });
                return;
            }
        }
        // Never call the transport from inside RestClient::get(): the transport promises
        // not to call back from inside its own get(), so a direct send is fine here.
        send();
    }

    void onHead(const HttpResponseHead& head) override {
        if (cancelled_) {
            return;
        }
        head_ = head;
        if (head.status == 200) {
            opened_ = true;
            stream_->onOpen();
        }
    }

    void onData(std::string_view bytes) override {
        if (cancelled_) {
            return;
        }
        if (opened_) {
            stream_->onData(bytes);
        } else if (errBody_.size() < kMaxErrorBody) {
            errBody_.append(bytes.substr(0, kMaxErrorBody - errBody_.size()));
        }
    }

    void onDone(const TransportError* error) override {
        if (cancelled_) {
            return;
        }
        auto keep = shared_from_this();
        req_.reset();
        if (opened_) {
            stream_->onClose(error);
            return;
        }
        if (head_.status == 0) {
            ApiError e;
            e.transport = true;
            e.transportKind = error != nullptr ? error->kind : TransportErrorKind::Reset;
            e.message = error != nullptr ? error->message : "no response";
            const bool retriable = e.transportKind == TransportErrorKind::Reset ||
                                   e.transportKind == TransportErrorKind::Timeout;
            if (retriable && retries_ < rc_.options_.maxRetries) {
                retry(e, rc_.options_.connectionRetryDelay);
                return;
            }
            stream_->onFailed(e);
            return;
        }
        ApiError e =
            apiErrorFromResponse(head_.status, head_.contentType, errBody_, head_.retryAfter);
        if (e.status == 401 && rc_.tokens_ != nullptr) {
            rc_.tokens_->reset();
        }
        if ((e.status == 429 || e.status >= 500) && e.retryAfter &&
            retries_ < rc_.options_.maxRetries) {
            retry(e, std::chrono::seconds(*e.retryAfter));
            return;
        }
        stream_->onFailed(e);
    }

  private:
    void send() {
        HttpRequest r;
        r.target = rc_.prefix_ + target_;
        r.headers.emplace_back("Accept", "application/json");
        r.headers.emplace_back("User-Agent", rc_.options_.userAgent);
        if (rc_.tokens_ != nullptr) {
            const std::string& tok = rc_.tokens_->token(rc_.clock_.now());
            if (!tok.empty()) {
                r.headers.emplace_back("Authorization", "Bearer " + tok);
            }
        }
        r.headerTimeout = rc_.options_.headerTimeout;
        r.bodyIdleTimeout = watch_ ? idle_ : rc_.options_.bodyIdleTimeout;
        head_ = {};
        errBody_.clear();
        opened_ = false;
        req_ = rc_.transport_->get(std::move(r), shared_from_this());
    }

    void retry(const ApiError& e, Duration delay) {
        ++retries_;
        if (rc_.hooks_.onRetry) {
            rc_.hooks_.onRetry(target_, e, delay);
        }
        timer_->start(delay, [this] { attempt(); });
    }

    RestClient& rc_;
    std::string target_;
    bool watch_;
    Duration idle_;
    RestStream* stream_;
    std::unique_ptr<Timer> timer_;
    std::unique_ptr<RequestHandle> req_;
    HttpResponseHead head_;
    std::string errBody_;
    bool opened_ = false;
    bool cancelled_ = false;
    int retries_ = 0;
};

RestClient::RestClient(std::shared_ptr<Transport> transport, Clock& clock, TokenSource* tokens,
                       TokenBucket* limiter, RestOptions options, RestHooks hooks)
    : transport_(std::move(transport)),
      clock_(clock),
      tokens_(tokens),
      limiter_(limiter),
      options_(std::move(options)),
      hooks_(std::move(hooks)) {}

namespace {
// Owns the CallImpl through its base; cancels it on destruction.
struct CallOwner : RestClient::Call {
    std::shared_ptr<void> impl;
    std::function<void()> cancel;
    ~CallOwner() override { cancel(); }
};
}  // namespace

std::unique_ptr<RestClient::Call> RestClient::get(std::string target, bool watch,
                                                  Duration watchIdleTimeout, RestStream& stream) {
    auto impl =
        std::make_shared<CallImpl>(*this, std::move(target), watch, watchIdleTimeout, stream);
    auto owner = std::make_unique<CallOwner>();
    owner->impl = impl;
    owner->cancel = [raw = impl.get()] { raw->cancel(); };
    impl->attempt();
    return owner;
}

}  // namespace kipvs::k8s
