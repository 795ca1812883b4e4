#include "k8s-client/framing.h"

#include <cstring>

namespace kipvs::k8s {

bool LineFramer::feed(std::string_view bytes) {
    if (failed_) {
        return false;
    }
    // Compact once the consumed prefix dominates, so the buffer does not grow without bound
    // over a long watch.
    if (pos_ > 0 && pos_ >= buf_.size() / 2) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    buf_.append(bytes.data(), bytes.size());
    if (buf_.size() - pos_ > maxLine_ &&
        std::memchr(buf_.data() + pos_, '\n', buf_.size() - pos_) == nullptr) {
        failed_ = true;
        return false;
    }
    return true;
}

bool LineFramer::next(std::string& line) {
    while (pos_ < buf_.size()) {
        const char* start = buf_.data() + pos_;
        const std::size_t avail = buf_.size() - pos_;
        const void* nl = scan_ < avail ? std::memchr(start + scan_, '\n', avail - scan_) : nullptr;
        if (nl == nullptr) {
            scan_ = avail;
            return false;
        }
        const auto len = static_cast<std::size_t>(static_cast<const char*>(nl) - start);
        pos_ += len + 1;
        scan_ = 0;
        if (len == 0 || (len == 1 && start[0] == '\r')) {
            continue;
        }
        line.assign(start, len);
        return true;
    }
    return false;
}

void LineFramer::reset() {
    buf_.clear();
    pos_ = 0;
    scan_ = 0;
    failed_ = false;
}

}  // namespace kipvs::k8s
