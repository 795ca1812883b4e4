// Time and randomness, injected: the client's backoff, Retry-After waits, rate limit and token
// re-reads run on a Clock, so unit tests drive them with FakeClock::advance and never sleep.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>

namespace boost::asio {
class io_context;
}

namespace kipvs::k8s {

using Duration = std::chrono::steady_clock::duration;
using TimePoint = std::chrono::steady_clock::time_point;

// A one-shot timer. start() replaces any pending shot; cancel() and destruction guarantee the
// callback will not run (even if it was already due).
class Timer {
  public:
    virtual ~Timer() = default;
    virtual void start(Duration after, std::function<void()> fn) = 0;
    virtual void cancel() = 0;
};

class Clock {
  public:
    virtual ~Clock() = default;
    virtual TimePoint now() const = 0;
    virtual std::unique_ptr<Timer> makeTimer() = 0;
};

// Uniform in [0, 1).
using RandomFn = std::function<double()>;

// steady_clock and Asio timers on the given io_context.
std::unique_ptr<Clock> makeAsioClock(boost::asio::io_context& ioc);

// A seeded Mersenne twister (std::random_device when seed is 0).
RandomFn makeRandom(std::uint64_t seed = 0);

// Manual time for tests. Timers fire from advance(), in due order, on the caller's thread.
class FakeClock : public Clock {
  public:
    TimePoint now() const override { return now_; }
    std::unique_ptr<Timer> makeTimer() override;
    // Moves time forward by `d`, firing every timer due on the way (including ones that the
    // fired callbacks start, if due within `d`).
    void advance(Duration d);
    // Fires timers that are due now (e.g. zero-delay ones) without moving time.
    void runDue() { advance(Duration::zero()); }
    // Time until the next pending timer; nullopt-like max() when none.
    Duration nextDue() const;
    std::size_t pendingTimers() const { return pending_.size(); }

  private:
    class FakeTimer;
    friend class FakeTimer;
    TimePoint now_{std::chrono::hours(1000)};
    std::uint64_t seq_ = 0;
    // (due, seq) -> callback. seq keeps equal-time timers in start order.
    std::map<std::pair<TimePoint, std::uint64_t>, std::function<void()>> pending_;
};

}  // namespace kipvs::k8s
