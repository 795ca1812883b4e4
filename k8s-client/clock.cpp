#include "k8s-client/clock.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <optional>
#include <random>

namespace kipvs::k8s {

namespace {

class AsioTimer : public Timer {
  public:
    explicit AsioTimer(boost::asio::io_context& ioc) : timer_(ioc) {}
    ~AsioTimer() override {
        ++*gen_;
        try {
            timer_.cancel();
        } catch (const boost::system::system_error&) {
            // Nothing to cancel on a broken timer; the generation already disarmed it.
        }
    }

    void start(Duration after, std::function<void()> fn) override {
        // A handler already queued with success cannot be recalled; the generation tells it
        // that it is stale.
        const auto gen = ++*gen_;
        timer_.expires_after(after);
        timer_.async_wait([g = gen_, gen, fn = std::move(fn)](const boost::system::error_code& ec) {
            if (!ec && *g == gen) {
                fn();
            }
        });
    }

    void cancel() override {
        ++*gen_;
        timer_.cancel();
    }

  private:
    boost::asio::steady_timer timer_;
    std::shared_ptr<std::uint64_t> gen_ = std::make_shared<std::uint64_t>(0);
};

class AsioClock : public Clock {
  public:
    explicit AsioClock(boost::asio::io_context& ioc) : ioc_(ioc) {}
    TimePoint now() const override { return std::chrono::steady_clock::now(); }
    std::unique_ptr<Timer> makeTimer() override { return std::make_unique<AsioTimer>(ioc_); }

  private:
    boost::asio::io_context& ioc_;
};

}  // namespace

std::unique_ptr<Clock> makeAsioClock(boost::asio::io_context& ioc) {
    return std::make_unique<AsioClock>(ioc);
}

RandomFn makeRandom(std::uint64_t seed) {
    auto gen = std::make_shared<std::mt19937_64>(seed != 0 ? seed : std::random_device{}());
    return [gen]() { return std::uniform_real_distribution<double>(0.0, 1.0)(*gen); };
}

class FakeClock::FakeTimer : public Timer {
  public:
    explicit FakeTimer(FakeClock& c) : clock_(c) {}
    ~FakeTimer() override { cancel(); }
    void start(Duration after, std::function<void()> fn) override {
        cancel();
        key_ = {clock_.now_ + after, ++clock_.seq_};
        clock_.pending_.emplace(*key_, std::move(fn));
    }
    void cancel() override {
        if (key_) {
            clock_.pending_.erase(*key_);
            key_.reset();
        }
    }

  private:
    FakeClock& clock_;
    std::optional<std::pair<TimePoint, std::uint64_t>> key_;
};

std::unique_ptr<Timer> FakeClock::makeTimer() {
    return std::make_unique<FakeTimer>(*this);
}

void FakeClock::advance(Duration d) {
    const TimePoint end = now_ + d;
    while (!pending_.empty() && pending_.begin()->first.first <= end) {
        auto node = pending_.extract(pending_.begin());
        if (node.key().first > now_) {
            now_ = node.key().first;
        }
        // The timer forgets its key when its entry is gone: cancel() on a fired timer then
        // finds nothing to erase (it looks the key up, and the key is no longer present).
        node.mapped()();
    }
    now_ = end;
}

Duration FakeClock::nextDue() const {
    if (pending_.empty()) {
        return Duration::max();
    }
    return pending_.begin()->first.first - now_;
}

}  // namespace kipvs::k8s
