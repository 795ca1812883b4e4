// A list built by push_back and read in order, kept in chunks of at most N elements.
//
// A sync step's IPVS writes were one std::vector: 22,000 of them for a cold start's step of
// 2,000 Services x 10 endpoints, 2.5 MB grown by doubling, so up to twice that while it grew,
// and the kernel interface built as much again per write when it applied them all at once.
// In chunks, nothing is copied as the list grows, and each chunk is applied on its own. The
// first chunk grows as a vector does (most steps write a handful); the others are allocated
// whole.
#pragma once

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

namespace kipvs::proxy {

template <class T, std::size_t N>
class ChunkedList {
    static_assert(N > 0);

  public:
    static constexpr std::size_t kChunk = N;

    void push_back(T v) {
        if (chunks_.empty() || chunks_.back().size() == N) {
            chunks_.emplace_back();
            if (chunks_.size() > 1) {
                chunks_.back().reserve(N);
            }
        }
        chunks_.back().push_back(std::move(v));
        ++size_;
    }
    bool empty() const { return size_ == 0; }
    std::size_t size() const { return size_; }
    // f(chunk) for each chunk, in order; chunk is a std::span<const T>.
    template <class F>
    void forEachChunk(F&& f) const {
        for (const auto& c : chunks_) {
            f(std::span<const T>(c));
        }
    }
    std::size_t chunkCount() const { return chunks_.size(); }

  private:
    std::vector<std::vector<T>> chunks_;
    std::size_t size_ = 0;
};

}  // namespace kipvs::proxy
