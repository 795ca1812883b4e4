#include "ipvs/writer_gate.h"

namespace kipvs::ipvs {

void WriterGate::enter() {
    const std::lock_guard lock(m_);
    ++writers_;
}

void WriterGate::leave() {
    bool idle = false;
    {
        const std::lock_guard lock(m_);
        idle = --writers_ == 0;
    }
    if (idle) {
        idle_.notify_all();
    }
}

bool WriterGate::awaitWriters() {
    std::unique_lock lock(m_);
    if (writers_ == 0) {
        return false;
    }
    const auto start = std::chrono::steady_clock::now();
    ++stats_.waitingNow;
    const bool idle = idle_.wait_for(lock, maxWait_, [this] { return writers_ == 0; });
    --stats_.waitingNow;
    ++stats_.waits;
    if (!idle) {
        ++stats_.timeouts;
    }
    stats_.waitSeconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return true;
}

WriterGate::Stats WriterGate::stats() const {
    const std::lock_guard lock(m_);
    return stats_;
}

}  // namespace kipvs::ipvs
