#include "k8s-client/client_thread.h"

#include <pthread.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace kipvs::k8s {

namespace {

// The calls waiting for the consumer, in order. Posting each call on its own woke the
// consumer's thread once per object: 20,000 cross-thread wake-ups for a list of 10,000
// Services and their slices, which under emulation cost more than the decoding. Calls queue
// here instead and are handed over together: the first call queued posts a flush to this
// client's own io_context, which runs once the handler that is queueing (the decoding of one
// piece of a response, every event in it) has returned, and posts one drain to the consumer;
// the drain runs everything queued by then. A piece of a list costs one wake-up, not one per
// object in it, and a burst that arrives while the consumer is busy costs one too. Shared, so
// what is posted stays valid after the ClientThread is gone.
//
// The queue is bounded: a call holds a copy of its object, and a consumer that falls behind
// (a cold start whose kernel writes are slow) would otherwise hold the rest of a 44,000-object
// list here, decoded, tens of MB. Once `maxQueued` calls wait (checked after each piece, so
// the queue passes the bound by up to one piece), the flush blocks the client's thread until
// the consumer has taken them down to half: the client stops reading, and TCP holds the rest
// of the response at the API server. It blocks for `waitSlice` at a time, so that the
// thread's other work (its other watches, their timers and reconnects) still moves while the
// consumer is slow, each slice letting a piece in; at twice the bound it blocks until the
// consumer takes, so the queue stays under twice the bound plus a piece. stop() releases a
// blocked flush, since the consumer may be the thread that stops the client.
class Outbox : public std::enable_shared_from_this<Outbox> {
  public:
    Outbox(ClientThread::Post post, boost::asio::io_context::executor_type local,
           std::size_t maxQueued, std::chrono::milliseconds waitSlice)
        : post_(std::move(post)),
          local_(std::move(local)),
          maxQueued_(std::max<std::size_t>(1, maxQueued)),
          waitSlice_(waitSlice) {}

    // On the client's thread.
    void operator()(std::function<void()> fn) {
        bool flush = false;
        {
            const std::lock_guard l(m_);
            queued_.push_back(std::move(fn));
            ++waiting_;
            flush = !flushPosted_;
            flushPosted_ = true;
        }
        if (flush) {
            boost::asio::post(local_, [self = shared_from_this()] { self->flush(); });
        }
    }

    // Any thread: no flush blocks from now on.
    void release() {
        {
            const std::lock_guard l(m_);
            released_ = true;
        }
        cv_.notify_all();
    }

  private:
    // On the client's thread, after the handler that queued.
    void flush() {
        bool wake = false;
        {
            const std::lock_guard l(m_);
            flushPosted_ = false;
            wake = !drainPosted_ && !queued_.empty();
            drainPosted_ = drainPosted_ || wake;
        }
        if (wake) {
            post_([self = shared_from_this()] { self->drain(); });
        }
        std::unique_lock l(m_);
        const auto taken = [&] { return released_ || waiting_ <= maxQueued_ / 2; };
        if (waiting_ >= 2 * maxQueued_) {
            cv_.wait(l, taken);
        } else if (waiting_ >= maxQueued_) {
            cv_.wait_for(l, waitSlice_, taken);
        }
    }

    // On the consumer's thread.
    void drain() {
        std::vector<std::function<void()>> batch;
        {
            const std::lock_guard l(m_);
            batch.swap(queued_);
            drainPosted_ = false;
        }
        // Counted off even if a call throws: the calls of the batch are gone either way, and
        // a consumer that carries on must not leave the client waiting for them.
        struct Done {
            Outbox& box;
            std::size_t n;
            ~Done() {
                {
                    const std::lock_guard l(box.m_);
                    box.waiting_ -= n;
                }
                box.cv_.notify_all();
            }
        } done{*this, batch.size()};
        for (auto& fn : batch) {
            fn();
        }
    }

    ClientThread::Post post_;
    boost::asio::io_context::executor_type local_;
    const std::size_t maxQueued_;
    const std::chrono::milliseconds waitSlice_;
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<std::function<void()>> queued_;
    std::size_t waiting_ = 0;  // queued, or taken by a drain that has not finished them
    bool flushPosted_ = false;
    bool drainPosted_ = false;
    bool released_ = false;
};

// Hands every call to the consumer's executor, with copies of its arguments (the client's
// objects are only valid during the call).
template <class T>
class ForwardHandler final : public EventHandler<T> {
  public:
    ForwardHandler(EventHandler<T>& to, const ClientThread::Post& post) : to_(to), post_(post) {}
    // The copy is captured as a T, not a const T: a closure with a const member copies it
    // whenever the closure itself is moved.
    void onAdd(const T& obj) override {
        post_([&to = to_, copy = obj] { to.onAdd(copy); });
    }
    void onUpdate(const T& obj) override {
        post_([&to = to_, copy = obj] { to.onUpdate(copy); });
    }
    void onDelete(const ObjectKey& key) override {
        post_([&to = to_, key] { to.onDelete(key); });
    }
    void onSynced() override {
        post_([&to = to_] { to.onSynced(); });
    }

  private:
    EventHandler<T>& to_;
    const ClientThread::Post& post_;
};

class ForwardObserver final : public Observer {
  public:
    ForwardObserver(Observer& to, const ClientThread::Post& post) : to_(to), post_(post) {}
    void onInvalid(Kind kind, const ObjectKey& key, const Issue& issue, bool whole,
                   const std::string& message) override {
        post_([&to = to_, kind, key, issue, whole, message] {
            to.onInvalid(kind, key, issue, whole, message);
        });
    }
    void onHandled(Kind kind, const ObjectKey& key, std::string_view code, const Issue& issue,
                   const std::string& message) override {
        post_([&to = to_, kind, key, code = std::string(code), issue, message] {
            to.onHandled(kind, key, code, issue, message);
        });
    }
    void onSkippedEvent(Kind kind, const std::string& message) override {
        post_([&to = to_, kind, message] { to.onSkippedEvent(kind, message); });
    }
    void onRequestError(Kind kind, std::string_view op, int status,
                        const std::string& message) override {
        post_([&to = to_, kind, op = std::string(op), status, message] {
            to.onRequestError(kind, op, status, message);
        });
    }
    void onRetry(std::string_view target, const std::string& reason, double delay) override {
        post_([&to = to_, target = std::string(target), reason, delay] {
            to.onRetry(target, reason, delay);
        });
    }
    void onList(Kind kind, const std::string& rv, const std::string& reason) override {
        post_([&to = to_, kind, rv, reason] { to.onList(kind, rv, reason); });
    }
    void onWatch(Kind kind, const std::string& rv, const std::string& reason) override {
        post_([&to = to_, kind, rv, reason] { to.onWatch(kind, rv, reason); });
    }
    void onBackoff(Kind kind, const std::string& reason, double delay) override {
        post_([&to = to_, kind, reason, delay] { to.onBackoff(kind, reason, delay); });
    }
    void onWatchListFallback(Kind kind, const std::string& reason) override {
        post_([&to = to_, kind, reason] { to.onWatchListFallback(kind, reason); });
    }
    void onSynced(Kind kind, std::size_t objects) override {
        post_([&to = to_, kind, objects] { to.onSynced(kind, objects); });
    }
    void onBytes(Kind kind, std::size_t n) override {
        post_([&to = to_, kind, n] { to.onBytes(kind, n); });
    }
    void onEvent(Kind kind, std::string_view type) override {
        post_([&to = to_, kind, type = std::string(type)] { to.onEvent(kind, type); });
    }

  private:
    Observer& to_;
    const ClientThread::Post& post_;
};

}  // namespace

struct ClientThread::Impl {
    Impl(Post p, std::size_t maxQueued, std::chrono::milliseconds waitSlice)
        : outbox(std::make_shared<Outbox>(std::move(p), ioc.get_executor(), maxQueued, waitSlice)),
          post([box = outbox](std::function<void()> fn) { (*box)(std::move(fn)); }),
          guard(ioc.get_executor()) {}

    // Destroyed after everything declared below, which may have operations queued on it.
    boost::asio::io_context ioc;
    std::shared_ptr<Outbox> outbox;
    Post post;  // into the outbox
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard;
    std::optional<ForwardHandler<Service>> services;
    std::optional<ForwardHandler<EndpointSlice>> slices;
    std::optional<ForwardHandler<Node>> node;
    std::optional<ForwardObserver> observer;
    std::unique_ptr<Client> client;
    std::unique_ptr<Informer<Service>> serviceInformer;
    std::unique_ptr<Informer<EndpointSlice>> sliceInformer;
    std::unique_ptr<Informer<Node>> nodeInformer;
    std::thread thread;
};

Result<std::unique_ptr<ClientThread>> ClientThread::start(const ClientConfig& config,
                                                          const ClientOptions& options,
                                                          Consumers consumers, Post post,
                                                          std::size_t maxQueued,
                                                          std::chrono::milliseconds waitSlice) {
    auto impl = std::make_unique<Impl>(std::move(post), maxQueued, waitSlice);
    if (consumers.services == nullptr && consumers.slices == nullptr && consumers.node == nullptr) {
        return Error::invalid("ClientThread: nothing to watch");
    }
    if (consumers.services != nullptr) {
        impl->services.emplace(*consumers.services, impl->post);
    }
    if (consumers.slices != nullptr) {
        impl->slices.emplace(*consumers.slices, impl->post);
    }
    if (consumers.node != nullptr) {
        impl->node.emplace(*consumers.node, impl->post);
    }
    Observer* observer = nullptr;
    if (consumers.observer != nullptr) {
        impl->observer.emplace(*consumers.observer, impl->post);
        observer = &*impl->observer;
    }
    auto client = Client::create(impl->ioc, config, options, observer);
    if (!client) {
        return client.error();
    }
    impl->client = std::move(*client);
    if (impl->services) {
        impl->serviceInformer = impl->client->watchServices(*impl->services);
    }
    if (impl->slices) {
        impl->sliceInformer = impl->client->watchEndpointSlices(*impl->slices);
    }
    if (impl->node) {
        impl->nodeInformer = impl->client->watchNode(consumers.nodeName, *impl->node);
    }
    // Starting only queues work on the io_context; it runs once the thread does (the thread's
    // creation orders everything above before it).
    if (impl->serviceInformer) {
        impl->serviceInformer->start();
    }
    if (impl->sliceInformer) {
        impl->sliceInformer->start();
    }
    if (impl->nodeInformer) {
        impl->nodeInformer->start();
    }
    Impl* raw = impl.get();
    impl->thread = std::thread([raw] {
        pthread_setname_np(pthread_self(), "kube-ipvs-api");  // for top -H, perf, gdb
        raw->ioc.run();
    });
    return std::unique_ptr<ClientThread>(new ClientThread(std::move(impl)));
}

ClientThread::ClientThread(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ClientThread::~ClientThread() {
    try {
        stop();
    } catch (...) {
        // Posting the shutdown (allocation) or joining failed. A joinable std::thread would
        // terminate the process when Impl is destroyed, so stop the loop from here and, if the
        // join still fails, let the thread go: it only runs the stopped io_context.
        if (impl_ && impl_->thread.joinable()) {
            impl_->ioc.stop();
            try {
                impl_->thread.join();
            } catch (...) {
                impl_->thread.detach();
            }
        }
    }
}

void ClientThread::stop() {
    if (!impl_ || !impl_->thread.joinable()) {
        return;
    }
    Impl* raw = impl_.get();
    raw->outbox->release();  // the caller may be the consumer, which no longer drains
    boost::asio::post(raw->ioc, [raw] {
        // No callback after an informer's destruction (informer.h), so nothing is posted to
        // the consumer after this.
        raw->serviceInformer.reset();
        raw->sliceInformer.reset();
        raw->nodeInformer.reset();
        raw->guard.reset();
        raw->ioc.stop();
    });
    raw->thread.join();
}

}  // namespace kipvs::k8s
