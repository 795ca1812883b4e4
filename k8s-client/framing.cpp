#include "k8s-client/framing.h"

#include <cstring>
#include <string_view>

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
    const std::size_t before = buf_.size();
    buf_.append(bytes.data(), bytes.size());
    // The unterminated tail: from the last '\n' (in the new bytes, else in what was pending).
    const void* last = ::memrchr(buf_.data() + before, '\n', bytes.size());
    if (last == nullptr && before > pos_) {
        last = ::memrchr(buf_.data() + pos_, '\n', before - pos_);
    }
    const std::size_t tailStart =
        last == nullptr
            ? pos_
            : static_cast<std::size_t>(static_cast<const char*>(last) - buf_.data()) + 1;
    if (buf_.size() - tailStart > maxLine_) {
        failed_ = true;
        return false;
    }
    return true;
}

bool LineFramer::next(std::string& line) {
    while (!failed_ && pos_ < buf_.size()) {
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
        if (len > maxLine_) {
            // A whole line over the limit that arrived in one read: as much an error as one
            // that is still arriving.
            failed_ = true;
            return false;
        }
        if (len == 0 || (len == 1 && start[0] == '\r')) {
            continue;
        }
        line.assign(start, len);
        return true;
    }
    return false;
}

bool LineFramer::takeRest(std::string& line) {
    if (failed_) {
        return false;
    }
    const std::string_view rest = std::string_view(buf_).substr(pos_);
    pos_ = buf_.size();
    scan_ = 0;
    if (rest.find_first_not_of(" \t\r") == std::string_view::npos) {
        return false;
    }
    line.assign(rest);
    return true;
}

void LineFramer::reset() {
    buf_.clear();
    pos_ = 0;
    scan_ = 0;
    failed_ = false;
}

}  // namespace kipvs::k8s
