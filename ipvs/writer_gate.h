// Lets a background reader of the IPVS table step aside while a writer works.
//
// The kernel serialises every IPVS write and every step of an IPVS dump on one mutex
// (__ip_vs_mutex). A dump of the virtual servers resumes each datagram by counting from the
// start of the table, so at 44,000 virtual servers one step holds the mutex for up to about
// 25 ms under emulation, and a full read takes it hundreds of times. A sync's batch of writes
// takes it once per write; when a read runs beside it, each write of the batch can wait for
// another step of the read (a batch of 10 writes: p99 67 ms against 3 ms alone). The writer
// marks its sync with enter()/leave(); the reader calls awaitWriters() before each step that
// takes the kernel's mutex and does not start one while a writer is in, so a batch waits for
// at most the step already running when it began.
//
// The reader never waits longer than maxWait per step: back-to-back syncs slow a read down,
// they do not stop it. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace kipvs::ipvs {

class WriterGate {
  public:
    explicit WriterGate(std::chrono::milliseconds maxWait) : maxWait_(maxWait) {}
    WriterGate(const WriterGate&) = delete;
    WriterGate& operator=(const WriterGate&) = delete;

    // Writers (any number, nested or on several threads).
    void enter();
    void leave();

    // Marks a writer in for its lifetime.
    class Scope {
      public:
        explicit Scope(WriterGate& g) : g_(g) { g_.enter(); }
        ~Scope() { g_.leave(); }
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;

      private:
        WriterGate& g_;
    };

    // The reader: returns at once when no writer is in, else when the last one leaves or
    // maxWait has passed. Returns true if it waited.
    bool awaitWriters();

    struct Stats {
        std::uint64_t waits = 0;     // awaitWriters() calls that found a writer in
        std::uint64_t timeouts = 0;  // of those, how many gave up after maxWait
        double waitSeconds = 0;      // time spent waiting in total
        int waitingNow = 0;          // readers inside awaitWriters() at this moment
    };
    Stats stats() const;

  private:
    const std::chrono::milliseconds maxWait_;
    mutable std::mutex m_;
    std::condition_variable idle_;
    int writers_ = 0;
    Stats stats_;
};

}  // namespace kipvs::ipvs
