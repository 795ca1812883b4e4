#include "k8s-client/reflector.h"

#include <boost/json.hpp>

#include <algorithm>
#include <memory>
#include <memory_resource>
#include <optional>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "k8s-client/framing.h"
#include "k8s-client/list_parser.h"

namespace kipvs::k8s {

namespace json = boost::json;

namespace {

constexpr std::string_view kInitialEventsEnd = "k8s.io/initial-events-end";

std::string_view stringAt(const json::object& o, std::string_view k) {
    const auto* v = o.if_contains(k);
    return (v != nullptr && v->is_string()) ? std::string_view(v->get_string())
                                            : std::string_view();
}

const json::object* objectAt(const json::object& o, std::string_view k) {
    const auto* v = o.if_contains(k);
    return (v != nullptr && v->is_object()) ? &v->get_object() : nullptr;
}

std::string metaResourceVersion(const json::object& obj) {
    const auto* meta = objectAt(obj, "metadata");
    return meta != nullptr ? std::string(stringAt(*meta, "resourceVersion")) : std::string();
}

// "ns/name" (or "name" for cluster-scoped objects): the map key of delivered objects.
std::string keyString(const ObjectKey& k) {
    return k.toString();
}

ObjectKey keyFromString(const std::string& s) {
    const auto slash = s.find('/');
    if (slash == std::string::npos) {
        return {"", s};
    }
    return {s.substr(0, slash), s.substr(slash + 1)};
}

ObjectKey metaKey(const json::value& v, bool namespaced) {
    ObjectKey k;
    if (!v.is_object()) {
        return k;
    }
    if (const auto* meta = objectAt(v.get_object(), "metadata")) {
        if (namespaced) {
            k.ns = std::string(stringAt(*meta, "namespace"));
        }
        k.name = std::string(stringAt(*meta, "name"));
    }
    return k;
}

enum class EventType { Added, Modified, Deleted };

// The protocol half of the reflector, independent of the object type.
class ReflectorCore {
  public:
    ReflectorCore(RestClient& rest, Clock& clock, RandomFn random, Observer* observer,
                  ResourceSpec spec, ReflectorOptions options)
        : rest_(rest),
          clock_(clock),
          random_(std::move(random)),
          observer_(observer != nullptr ? observer : &nullObserver_),
          spec_(std::move(spec)),
          options_(options),
          backoff_(options.backoff, random_),
          timer_(clock.makeTimer()),
          stream_(*this),
          parser_([this](json::value&& item) { deliverReplaceItem(item); }) {}

    virtual ~ReflectorCore() = default;
    ReflectorCore(const ReflectorCore&) = delete;
    ReflectorCore& operator=(const ReflectorCore&) = delete;

  protected:
    void startCore() {
        if (!started_) {
            started_ = true;
            cycle("initial");
        }
    }

    void stopCore() {
        call_.reset();
        timer_->cancel();
    }

    bool syncedCore() const { return synced_; }
    Observer& observer() { return *observer_; }
    Kind kind() const { return spec_.kind; }

    // The typed half.
    // A replace (a list, or watch-list's initial events) delivers each object as it arrives
    // and deletes, at commit, the delivered objects it did not list.
    virtual void beginReplace() = 0;
    // True when the consumer got an add or an update.
    virtual bool replaceItem(const json::value& obj) = 0;
    virtual void removeFromReplace(const json::value& obj) = 0;
    virtual void commitReplace() = 0;
    virtual void apply(EventType type, const json::value& obj) = 0;
    virtual void deliverSynced() = 0;
    virtual std::size_t deliveredCount() const = 0;

  private:
    enum class Mode { Idle, List, WatchList, Watch };

    class Stream : public RestStream {
      public:
        explicit Stream(ReflectorCore& r) : r_(r) {}
        void onOpen() override {}
        void onData(std::string_view bytes) override { r_.onData(bytes); }
        void onClose(const TransportError* error) override { r_.onClose(error); }
        void onFailed(const ApiError& error) override { r_.onFailed(error); }

      private:
        ReflectorCore& r_;
    };

    std::string kindName() const { return std::string(k8s::kindName(spec_.kind)); }

    // Query parameters in Go's url.Values order (sorted by key).
    std::string target(std::vector<std::pair<std::string, std::string>> params) const {
        if (!spec_.fieldSelector.empty()) {
            params.emplace_back("fieldSelector", spec_.fieldSelector);
        }
        if (!spec_.labelSelector.empty()) {
            params.emplace_back("labelSelector", spec_.labelSelector);
        }
        std::sort(params.begin(), params.end());
        std::string t = spec_.path;
        char sep = '?';
        for (const auto& [k, v] : params) {
            t += sep;
            t += k;
            t += '=';
            t += queryEscape(v);
            sep = '&';
        }
        return t;
    }

    int randomTimeoutSeconds() {
        const double min = std::chrono::duration<double>(options_.minWatchTimeout).count();
        return static_cast<int>(min * (1.0 + random_()));
    }

    // The replace's objects go out as they arrive. Should it end before its commit, the next
    // one must not answer with older versions of them: in an HA cluster, a list at the old RV
    // ("not older than") may reach an API server whose cache lags the one that sent them. So
    // once a change went out, the next list is a consistent read (RV "").
    void deliverReplaceItem(const json::value& obj) {
        if (replaceItem(obj)) {
            replaceDelivered_ = true;
        }
    }

    // An abandoned replace leaves nothing to undo: its marks are never a later one's.
    void abandonReplace() {
        if (replaceDelivered_) {
            consistentRelist_ = true;
            replaceDelivered_ = false;
        }
    }

    void finishReplace() {
        commitReplace();
        replaceDelivered_ = false;
    }

    std::string relistResourceVersion() const {
        if (consistentRelist_) {
            return "";
        }
        return lastRV_.empty() ? "0" : lastRV_;
    }

    void cycle(const std::string& reason) {
        if (options_.watchList && !watchListUnsupported_) {
            startWatchList(reason);
        } else {
            startList(reason);
        }
    }

    void startWatchList(const std::string& reason) {
        mode_ = Mode::WatchList;
        initial_ = true;
        beginReplace();
        const std::string rv = consistentRelist_ ? std::string() : lastRV_;
        observer_->onList(spec_.kind, rv, reason);
        const int timeout = randomTimeoutSeconds();
        std::vector<std::pair<std::string, std::string>> q = {
            {"allowWatchBookmarks", "true"},
            {"resourceVersionMatch", "NotOlderThan"},
            {"sendInitialEvents", "true"},
            {"timeoutSeconds", std::to_string(timeout)},
            {"watch", "true"}};
        if (!rv.empty()) {
            q.emplace_back("resourceVersion", rv);
        }
        startStream(target(std::move(q)), timeout);
    }

    void startList(const std::string& reason) {
        mode_ = Mode::List;
        initial_ = false;
        listRV_ = relistResourceVersion();
        usePaging_ = listRV_.empty() || listRV_ == "0" || paginatedResult_;
        continue_.clear();
        pages_ = 0;
        fullListRetried_ = false;
        beginReplace();
        observer_->onList(spec_.kind, listRV_, reason);
        requestPage();
    }

    void requestPage() {
        std::vector<std::pair<std::string, std::string>> q;
        if (usePaging_ && options_.pageSize > 0) {
            q.emplace_back("limit", std::to_string(options_.pageSize));
        }
        if (!continue_.empty()) {
            q.emplace_back("continue", continue_);
        } else if (!listRV_.empty()) {
            q.emplace_back("resourceVersion", listRV_);
        }
        parser_.reset();
        call_ = rest_.get(target(std::move(q)), false, Duration::zero(), stream_);
    }

    void startWatch(const std::string& reason) {
        mode_ = Mode::Watch;
        initial_ = false;
        observer_->onWatch(spec_.kind, lastRV_, reason);
        const int timeout = randomTimeoutSeconds();
        startStream(target({{"allowWatchBookmarks", "true"},
                            {"resourceVersion", lastRV_},
                            {"timeoutSeconds", std::to_string(timeout)},
                            {"watch", "true"}}),
                    timeout);
    }

    void startStream(std::string t, int timeoutSeconds) {
        framer_.reset();
        events_ = 0;
        watchStart_ = clock_.now();
        call_ = rest_.get(std::move(t), true,
                          std::chrono::seconds(timeoutSeconds) + options_.watchIdleSlack, stream_);
    }

    // Ends the cycle; the next one starts after the backoff.
    void failCycle(const std::string& reason) {
        call_.reset();
        if (mode_ == Mode::List || initial_) {
            abandonReplace();
        }
        initial_ = false;
        mode_ = Mode::Idle;
        const Duration d = backoff_.next(clock_.now());
        observer_->onBackoff(spec_.kind, reason, std::chrono::duration<double>(d).count());
        timer_->start(d, [this, reason] { cycle(reason); });
    }

    void markSynced() {
        if (!synced_) {
            synced_ = true;
            deliverSynced();
            observer_->onSynced(spec_.kind, deliveredCount());
        }
    }

    void onData(std::string_view bytes) {
        observer_->onBytes(spec_.kind, bytes.size());
        if (mode_ == Mode::List) {
            if (!parser_.feed(bytes)) {
                const std::string msg = "list " + spec_.path + ": decoding: " + parser_.error();
                observer_->onRequestError(spec_.kind, "list", 200, msg);
                failCycle(msg);
            }
            return;
        }
        if (!framer_.feed(bytes)) {
            streamError("watch event larger than the line limit");
            return;
        }
        std::string line;
        while (framer_.next(line)) {
            if (!handleLine(line)) {
                return;  // the watch ended; `this` may already run another request
            }
        }
        if (framer_.failed()) {
            streamError("watch event larger than the line limit");
        }
    }

    void onClose(const TransportError* error) {
        if (mode_ == Mode::List) {
            if (error != nullptr) {
                const std::string msg = "list " + spec_.path + ": " + error->message;
                observer_->onRequestError(spec_.kind, "list", 0, msg);
                failCycle(msg);
                return;
            }
            if (!parser_.finish()) {
                const std::string msg = "list " + spec_.path + ": decoding: " + parser_.error();
                observer_->onRequestError(spec_.kind, "list", 200, msg);
                failCycle(msg);
                return;
            }
            ++pages_;
            if (!parser_.continueToken().empty()) {
                if (pages_ == 1 && listRV_ == "0") {
                    paginatedResult_ = true;
                }
                continue_ = parser_.continueToken();
                requestPage();
                return;
            }
            const std::string rv = parser_.resourceVersion();
            finishReplace();
            lastRV_ = rv;
            consistentRelist_ = false;
            markSynced();
            startWatch("list complete");
            return;
        }
        // A last event may end without its '\n' (client-go frames values, not lines). A clean
        // end inside an event is a server bug: relist. A reset or timeout naturally cuts an
        // event short; it was not applied, and the re-watch from the last RV delivers it again.
        std::string rest;
        if (error == nullptr && framer_.takeRest(rest) && !handleLine(rest, true)) {
            return;
        }
        const bool inInitial = initial_;
        const std::string how = error != nullptr ? "watch stream reset: " + error->message
                                                 : std::string("watch stream closed");
        if (inInitial) {
            call_.reset();
            abandonReplace();
            initial_ = false;
            observer_->onWatchListFallback(spec_.kind,
                                           how + " before the initial-events-end bookmark");
            startList("watch-list ended before its bookmark");
            return;
        }
        if (events_ == 0 && clock_.now() - watchStart_ < options_.veryShortWatch) {
            const std::string msg =
                "very short watch: " + how + " within " +
                std::to_string(std::chrono::duration<double>(options_.veryShortWatch).count()) +
                " s with no events";
            observer_->onRequestError(spec_.kind, "watch", 0, msg);
            failCycle(msg);
            return;
        }
        call_.reset();
        startWatch(how);
    }

    void onFailed(const ApiError& e) {
        call_.reset();
        if (mode_ == Mode::List) {
            observer_->onRequestError(spec_.kind, "list", e.status, e.describe());
            if (!continue_.empty() && e.isExpired() && !fullListRetried_) {
                // The continue token outlived compaction: one full list without paging, as
                // client-go's pager does; at RV "" if earlier pages delivered objects.
                fullListRetried_ = true;
                usePaging_ = false;
                continue_.clear();
                abandonReplace();
                listRV_ = relistResourceVersion();
                beginReplace();
                requestPage();
                return;
            }
            if ((e.isExpired() || e.isTooLargeResourceVersion()) && !listRV_.empty()) {
                // The RV asked for is gone (compacted) or not reached yet by this server's
                // cache: list again at once at RV "" (a consistent read), as client-go does,
                // instead of after a backoff step. A list at "" cannot fail this way.
                consistentRelist_ = true;
                abandonReplace();
                startList("list: " + e.describe());
                return;
            }
            failCycle("list: " + e.describe());
            return;
        }
        if (initial_) {
            observer_->onRequestError(spec_.kind, "watch-list", e.status, e.describe());
            abandonReplace();
            initial_ = false;
            if (e.isExpired() || e.isTooLargeResourceVersion()) {
                consistentRelist_ = true;
            }
            if (e.status == 422) {
                watchListUnsupported_ = true;  // the server lacks the feature: stop asking
            }
            observer_->onWatchListFallback(spec_.kind, e.describe());
            startList("watch-list rejected: " + e.describe());
            return;
        }
        observer_->onRequestError(spec_.kind, "watch", e.status, e.describe());
        if (e.status == 429 ||
            (e.transport && e.transportKind == TransportErrorKind::ConnectionRefused)) {
            const Duration d = backoff_.next(clock_.now());
            const std::string reason = "watch: " + e.describe();
            observer_->onBackoff(spec_.kind, reason, std::chrono::duration<double>(d).count());
            mode_ = Mode::Idle;
            timer_->start(d, [this, reason] { startWatch(reason); });
            return;
        }
        failCycle("watch: " + e.describe());
    }

    void streamError(const std::string& msg) {
        if (initial_) {
            observer_->onRequestError(spec_.kind, "watch-list", 0, msg);
            fallBackFromWatchList(msg, false);
            return;
        }
        observer_->onRequestError(spec_.kind, "watch", 0, msg);
        failCycle(msg);
    }

    // The watch-list broke before its initial-events-end bookmark (an in-band ERROR, a line
    // that does not decode): list at once, within the same cycle, as client-go's ListAndWatch
    // falls back from watchList() (kubernetes-api.md §4 step 7). Backing off here instead
    // would add a second backoff to the one that started this cycle. Only a failing list
    // backs off. After a 410 or a too-large RV the list asks for RV "" (consistent read).
    void fallBackFromWatchList(const std::string& why, bool rvGone) {
        call_.reset();
        abandonReplace();
        initial_ = false;
        if (rvGone) {
            consistentRelist_ = true;
        }
        observer_->onWatchListFallback(spec_.kind, why);
        startList("watch-list failed: " + why);
    }

    // A line holds one event from the API server, but client-go reads the stream as a
    // sequence of JSON values, so "{...}{...}" on one line is two events. Returns false once
    // the watch has ended (`this` may then already run another request). `atEnd`: the line is
    // the stream's unterminated tail, where an incomplete value is a cut-off event.
    bool handleLine(std::string_view line, bool atEnd = false) {
        std::size_t pos = 0;
        while ((pos = line.find_first_not_of(" \t\r", pos)) != std::string_view::npos) {
            if (!handleEvent(line, pos, atEnd)) {
                return false;
            }
        }
        return true;
    }

    // Decodes and applies the JSON value at line[pos...], moving pos past it.
    bool handleEvent(std::string_view line, std::size_t& pos, bool atEnd) {
        json::error_code ec;
        // The event's JSON tree lives only for this call: it is built in the reused
        // eventArena_ (an event bigger than it continues on the heap, freed on return), not
        // node by node with the default allocator, and torn down without visiting each node.
        // A 10-endpoint EndpointSlice is some 60 allocations less to make and free. Should a
        // consumer's callback ever lead back here for another line, that one uses the heap.
        struct ArenaUse {
            bool& busy;
            bool was;
            ~ArenaUse() { busy = was; }
        } const use{eventArenaBusy_, eventArenaBusy_};
        eventArenaBusy_ = true;
        std::optional<json::monotonic_resource> arena;
        if (!use.was) {
            arena.emplace(eventArena_.get(), kEventArenaBytes);
        }
        unsigned char parserStack[4096];
        json::parser parser(json::storage_ptr(), {}, parserStack, sizeof parserStack);
        parser.reset(arena ? json::storage_ptr(&*arena) : json::storage_ptr());
        // write_some stops at the end of the first complete value; a value cut short is an
        // error::incomplete.
        const std::size_t used = parser.write_some(line.data() + pos, line.size() - pos, ec);
        pos += used;
        if (ec == json::error::incomplete && atEnd) {
            streamError("watch stream ended inside an event (" + std::to_string(line.size()) +
                        " bytes of a partial line)");
            return false;
        }
        if (ec) {
            streamError("unable to decode an event from the watch stream: " + ec.message());
            return false;
        }
        json::value v = parser.release();
        if (!v.is_object()) {
            streamError("unable to decode an event from the watch stream: not a JSON object");
            return false;
        }
        auto& ev = v.get_object();
        const std::string_view type = stringAt(ev, "type");
        auto* objv = ev.if_contains("object");
        if (objv == nullptr || !objv->is_object()) {
            streamError("unable to decode an event from the watch stream: no object in event");
            return false;
        }
        const auto& obj = objv->get_object();
        observer_->onEvent(spec_.kind, type);
        if (type == "ERROR") {
            auto e = apiErrorFromStatusJson(json::serialize(obj));
            const std::string msg =
                "watch " + spec_.path + ": ERROR event: " + (e ? e->describe() : "not a Status");
            if (initial_) {
                observer_->onRequestError(spec_.kind, "watch-list", e ? e->status : 0, msg);
                fallBackFromWatchList(msg, e && (e->isExpired() || e->isTooLargeResourceVersion()));
                return false;
            }
            observer_->onRequestError(spec_.kind, "watch", e ? e->status : 0, msg);
            failCycle(msg);
            return false;
        }
        const bool known =
            type == "ADDED" || type == "MODIFIED" || type == "DELETED" || type == "BOOKMARK";
        if (!known) {
            streamError("unable to decode an event from the watch stream: unknown event type \"" +
                        std::string(type) + "\"");
            return false;
        }
        // An object of another kind is skipped without touching the RV (FS-40).
        const std::string_view objKind = stringAt(obj, "kind");
        if (!objKind.empty() && objKind != k8s::kindName(spec_.kind)) {
            observer_->onSkippedEvent(spec_.kind, std::string(type) + " event of kind " +
                                                      std::string(objKind) + " on the " +
                                                      kindName() + " watch");
            return true;
        }
        ++events_;
        const std::string rv = metaResourceVersion(obj);
        if (type == "BOOKMARK") {
            if (initial_) {
                const auto* meta = objectAt(obj, "metadata");
                const auto* ann = meta != nullptr ? objectAt(*meta, "annotations") : nullptr;
                if (ann != nullptr && stringAt(*ann, kInitialEventsEnd) == "true") {
                    initial_ = false;
                    mode_ = Mode::Watch;
                    finishReplace();
                    if (!rv.empty()) {
                        lastRV_ = rv;
                    }
                    consistentRelist_ = false;
                    markSynced();
                } else {
                    // A server that honours sendInitialEvents sends the annotated bookmark
                    // before any other. A plain one means it ignored the parameter (servers
                    // before 1.27): its ADDED events were a plain watch's, and the annotated
                    // bookmark will never come. Fall back rather than wait for the timeout.
                    call_.reset();
                    abandonReplace();
                    initial_ = false;
                    watchListUnsupported_ = true;
                    observer_->onWatchListFallback(spec_.kind,
                                                   "server sent a bookmark without " +
                                                       std::string(kInitialEventsEnd) +
                                                       ": sendInitialEvents not supported");
                    startList("watch-list not supported by the server");
                    return false;
                }
            } else if (!rv.empty()) {
                lastRV_ = rv;
            }
            return true;
        }
        if (initial_) {
            if (type == "DELETED") {
                removeFromReplace(*objv);
            } else {
                deliverReplaceItem(*objv);
            }
            return true;
        }
        apply(type == "ADDED"      ? EventType::Added
              : type == "MODIFIED" ? EventType::Modified
                                   : EventType::Deleted,
              *objv);
        if (!rv.empty()) {
            lastRV_ = rv;
        }
        return true;
    }

    Observer nullObserver_;
    RestClient& rest_;
    Clock& clock_;
    RandomFn random_;
    Observer* observer_;
    ResourceSpec spec_;
    ReflectorOptions options_;
    Backoff backoff_;
    std::unique_ptr<Timer> timer_;
    Stream stream_;
    ListParser parser_;
    LineFramer framer_;
    static constexpr std::size_t kEventArenaBytes = 64 * 1024;
    std::unique_ptr<unsigned char[]> eventArena_ =
        std::make_unique_for_overwrite<unsigned char[]>(kEventArenaBytes);
    bool eventArenaBusy_ = false;
    std::unique_ptr<RestClient::Call> call_;

    Mode mode_ = Mode::Idle;
    bool started_ = false;
    bool synced_ = false;
    std::string lastRV_;
    // The next list or watch-list asks for RV "" (a consistent read): the last RV is gone, or
    // an abandoned replace delivered objects newer than it.
    bool consistentRelist_ = false;
    bool replaceDelivered_ = false;
    bool paginatedResult_ = false;
    bool watchListUnsupported_ = false;
    // List state.
    std::string listRV_;
    std::string continue_;
    bool usePaging_ = false;
    bool fullListRetried_ = false;
    int pages_ = 0;
    // Watch state.
    bool initial_ = false;  // watch-list before its initial-events-end bookmark
    TimePoint watchStart_{};
    std::size_t events_ = 0;
};

// Hashes any string type by its characters, so that a set of one string type can be searched
// with another (std::string_view) without a copy.
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

// The keys of delivered objects ("ns/name") with a 64-bit value each, allocated from a pool of
// their own. They live as long as the objects; allocated among the decoder thread's
// short-lived allocations (each object's JSON and decoded copy), they were spread over its
// whole heap and kept its pages resident: at 44,000 Services x 10, 9 MB of keys held 26 MB
// on the two decoding threads.
class KeyTable {
  public:
    KeyTable() : map_(&pool_) {}
    KeyTable(const KeyTable&) = delete;
    KeyTable& operator=(const KeyTable&) = delete;

    // The value under `key`, inserted as `value` if absent; and whether it was inserted.
    std::pair<std::uint64_t*, bool> tryEmplace(std::string_view key, std::uint64_t value) {
        if (auto it = map_.find(key); it != map_.end()) {
            return {&it->second, false};
        }
        auto it = map_.emplace(std::piecewise_construct, std::forward_as_tuple(key),
                               std::forward_as_tuple(value))
                      .first;
        return {&it->second, true};
    }
    bool erase(std::string_view key) {
        auto it = map_.find(key);
        if (it == map_.end()) {
            return false;
        }
        map_.erase(it);
        return true;
    }
    std::size_t size() const { return map_.size(); }
    bool empty() const { return map_.empty(); }
    std::uint64_t* find(std::string_view key) {
        auto it = map_.find(key);
        return it == map_.end() ? nullptr : &it->second;
    }
    // f(key, value&) for each key; f must not insert or erase.
    template <class F>
    void forEach(F&& f) {
        for (auto& [key, value] : map_) {
            f(std::string_view(key), value);
        }
    }

  private:
    std::pmr::unsynchronized_pool_resource pool_;
    std::pmr::unordered_map<std::pmr::string, std::uint64_t, StringHash, std::equal_to<>> map_;
};

template <class T>
class Reflector final : public ReflectorCore, public Informer<T> {
  public:
    Reflector(RestClient& rest, Clock& clock, RandomFn random, Observer* observer,
              ResourceSpec spec, ReflectorOptions options, EventHandler<T>& handler)
        : ReflectorCore(rest, clock, std::move(random), observer, std::move(spec), options),
          handler_(handler) {}

    ~Reflector() override { stopCore(); }

    void start() override { startCore(); }
    bool hasSynced() const override { return syncedCore(); }
    std::size_t size() const override { return delivered_.size(); }

  private:
    static constexpr bool kNamespaced = Codec<T>::kKind != Kind::Node;

    std::optional<T> decode(const json::value& v, DecodeReport& r) {
        auto o = Codec<T>::decode(v, r);
        for (const auto& issue : r.dropped) {
            observer().onInvalid(kind(), r.key, issue, false, r.describe(issue));
        }
        if (r.rejection) {
            observer().onInvalid(kind(), r.key, *r.rejection, true, r.describe(*r.rejection));
        }
        return o;
    }

    // Each delivered object's entry holds its content hash (48 bits) and the mark of the
    // replace that last listed it (16 bits). At a replace's commit, the objects without its
    // mark were not listed: they are gone. (A set of the listed keys did that before: at
    // 44,000 Services x 10 it held 8 MB while the lists came in, on top of the peak.) Mark 0
    // is never a replace's: it unmarks.
    static constexpr int kMarkBits = 16;
    static constexpr std::uint64_t kMarkMask = (std::uint64_t{1} << kMarkBits) - 1;
    static std::uint64_t entryOf(std::uint64_t hash, std::uint64_t mark) {
        return (hash << kMarkBits) | mark;
    }
    static std::uint64_t hashOf(std::uint64_t entry) { return entry >> kMarkBits; }
    static std::uint64_t markOf(std::uint64_t entry) { return entry & kMarkMask; }

    void beginReplace() override {
        if (++mark_ > kMarkMask) {
            // Wrapped: an object listed by none of the last 65,535 replaces (all abandoned)
            // may still carry the mark that comes round again. Unmark all first.
            delivered_.forEach(
                [](std::string_view, std::uint64_t& e) { e = entryOf(hashOf(e), 0); });
            mark_ = 1;
        }
    }

    void unmark(std::string_view key) {
        if (auto* e = delivered_.find(key)) {
            *e = entryOf(hashOf(*e), 0);
        }
    }

    // Each object is whole and real (a version the server held at some point not older than
    // what was delivered before), so it goes out now, as a watch event would; only the
    // deletions of the set-based replace wait for its end. Holding a 44,000-object list until
    // then, as client-go does, would keep two copies of it (the held one and, once swapped
    // in, the consumer's) and keep the consumer from programming anything while it arrives.
    bool replaceItem(const json::value& v) override {
        DecodeReport r;
        auto o = decode(v, r);
        if (!o) {
            unmark(keyString(r.key));
            return false;
        }
        return upsert(keyString(Codec<T>::key(*o)), *o, r.notes);
    }

    // A DELETED among watch-list's initial events (a server that ignored sendInitialEvents
    // sends a plain watch's events): not listed, so deleted at commit if it was delivered.
    void removeFromReplace(const json::value& v) override {
        unmark(keyString(metaKey(v, kNamespaced)));
    }

    void commitReplace() override {
        std::vector<std::string> gone;
        delivered_.forEach([&](std::string_view key, std::uint64_t e) {
            if (markOf(e) != mark_) {
                gone.emplace_back(key);
            }
        });
        std::sort(gone.begin(), gone.end());
        for (const auto& key : gone) {
            delivered_.erase(key);
            noted_.erase(key);
            handler_.onDelete(keyFromString(key));
        }
    }

    void apply(EventType type, const json::value& v) override {
        if (type == EventType::Deleted) {
            const ObjectKey key = metaKey(v, kNamespaced);
            const std::string ks = keyString(key);
            noted_.erase(ks);
            if (delivered_.erase(ks)) {
                handler_.onDelete(key);
            }
            return;
        }
        DecodeReport r;
        auto o = decode(v, r);
        if (!o) {
            // A version we cannot use replaces one we delivered: the consumer must not keep
            // programming the old one.
            const std::string ks = keyString(r.key);
            noted_.erase(ks);
            if (delivered_.erase(ks)) {
                handler_.onDelete(r.key);
            }
            return;
        }
        upsert(keyString(Codec<T>::key(*o)), *o, r.notes);
    }

    // True when the object went out (added or changed).
    // The object carries the current replace's mark, whether a replace or a watch event
    // delivered it.
    bool upsert(const std::string& key, const T& obj, const std::vector<Note>& notes) {
        const std::uint64_t h = contentHash(obj) >> kMarkBits;
        auto [slot, inserted] = delivered_.tryEmplace(key, entryOf(h, mark_));
        const bool changed = inserted || hashOf(*slot) != h;
        reportNotes(key, obj, notes, changed);
        *slot = entryOf(h, mark_);
        if (inserted) {
            handler_.onAdd(obj);
        } else if (changed) {
            handler_.onUpdate(obj);
        }
        return changed;
    }

    // Notes are reported when the object is delivered (added or changed) or when its notes
    // changed (an annotation alone does not change what is delivered); not again for an
    // unchanged object seen by a relist. Only objects with notes are remembered.
    void reportNotes(const std::string& key, const T& obj, const std::vector<Note>& notes,
                     bool delivered) {
        if (notes.empty()) {
            if (!noted_.empty()) {
                noted_.erase(key);
            }
            return;
        }
        std::uint64_t sig = 1469598103934665603ULL;
        for (const auto& n : notes) {
            for (auto part : {n.code, std::string_view(n.issue.field)}) {
                for (const char c : part) {
                    sig = (sig ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
                }
                sig = (sig ^ 0xffU) * 1099511628211ULL;
            }
        }
        auto [slot, fresh] = noted_.tryEmplace(key, sig);
        if (!delivered && !fresh && *slot == sig) {
            return;
        }
        *slot = sig;
        const ObjectKey okey = Codec<T>::key(obj);
        for (const auto& n : notes) {
            observer().onHandled(kind(), okey, n.code, n.issue,
                                 describeIssue(kind(), okey, n.issue));
        }
    }

    void deliverSynced() override { handler_.onSynced(); }
    std::size_t deliveredCount() const override { return delivered_.size(); }

    EventHandler<T>& handler_;
    KeyTable delivered_;      // key -> entryOf(content hash, mark)
    std::uint64_t mark_ = 0;  // the current (or last) replace's mark, 1..kMarkMask
    // Signature of the notes last reported, for delivered objects that have notes only.
    KeyTable noted_;
};

}  // namespace

template <class T>
std::unique_ptr<Informer<T>> makeReflector(RestClient& rest, Clock& clock, RandomFn random,
                                           Observer* observer, ResourceSpec spec,
                                           ReflectorOptions options, EventHandler<T>& handler) {
    return std::make_unique<Reflector<T>>(rest, clock, std::move(random), observer, std::move(spec),
                                          options, handler);
}

template std::unique_ptr<Informer<Service>> makeReflector<Service>(RestClient&, Clock&, RandomFn,
                                                                   Observer*, ResourceSpec,
                                                                   ReflectorOptions,
                                                                   EventHandler<Service>&);
template std::unique_ptr<Informer<EndpointSlice>> makeReflector<EndpointSlice>(
    RestClient&, Clock&, RandomFn, Observer*, ResourceSpec, ReflectorOptions,
    EventHandler<EndpointSlice>&);
template std::unique_ptr<Informer<Node>> makeReflector<Node>(RestClient&, Clock&, RandomFn,
                                                             Observer*, ResourceSpec,
                                                             ReflectorOptions, EventHandler<Node>&);

}  // namespace kipvs::k8s
