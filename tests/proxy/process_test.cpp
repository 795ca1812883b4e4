#include "proxy/process.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

using namespace kipvs;

#if defined(__SANITIZE_ADDRESS__)
#define KIPVS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KIPVS_ASAN 1
#endif
#endif

namespace {

#ifndef KIPVS_ASAN
// Resident pages of this process (/proc/self/statm, second field), in bytes.
long residentBytes() {
    std::ifstream f("/proc/self/statm");
    long size = 0;
    long resident = 0;
    f >> size >> resident;
    return resident * sysconf(_SC_PAGESIZE);
}

// `bytes` in 4,000-byte blocks (below any mmap threshold, so they come from the calling
// thread's heap), block i filled with (char)i.
std::vector<std::unique_ptr<char[]>> smallBlocks(std::size_t bytes) {
    constexpr std::size_t kBlock = 4000;
    std::vector<std::unique_ptr<char[]>> blocks;
    blocks.reserve(bytes / kBlock);
    for (std::size_t i = 0; i < bytes / kBlock; ++i) {
        blocks.emplace_back(new char[kBlock]);
        std::fill_n(blocks.back().get(), kBlock, static_cast<char>(i));
    }
    return blocks;
}
#endif

}  // namespace

TEST_CASE("the verification reader lowers its own thread's priority, not the process's",
          "[process]") {
    const int before = proxy::threadNice();
    int inThread = -100;
    bool ok = false;
    std::thread t([&] {
        ok = proxy::lowerThreadPriority(10);
        inThread = proxy::threadNice();
    });
    t.join();
    REQUIRE(ok);
    CHECK(inThread == std::min(before + 10, 19));
    CHECK(proxy::threadNice() == before);
}

TEST_CASE("releaseFreeHeap gives freed heap pages back to the kernel", "[process]") {
#ifdef KIPVS_ASAN
    WARN(
        "skipped under AddressSanitizer: its allocator keeps freed memory in quarantine and "
        "does not use glibc's heap that malloc_trim releases");
#else
    // 64 MiB in small blocks, then all freed but the last, which pins the top of the heap:
    // free() alone cannot shrink it.
    auto blocks = smallBlocks(64U << 20);
    const auto last = static_cast<char>(blocks.size() - 1);
    auto pin = std::move(blocks.back());
    blocks.clear();
    blocks.shrink_to_fit();
    const long before = residentBytes();
    CHECK(proxy::releaseFreeHeap());
    const long after = residentBytes();
    INFO("resident before " << before << " after " << after);
    CHECK(before - after > (48L << 20));
    CHECK(pin[0] == last);
#endif
}

TEST_CASE("limitHeapRetention keeps a thread's freed heap from staying resident", "[process]") {
#ifdef KIPVS_ASAN
    WARN("skipped under AddressSanitizer: its allocator does not use glibc's heaps");
#else
    proxy::limitHeapRetention();
    {
        // Freeing a large mapped block raises glibc's adaptive thresholds (here to 16 and
        // 32 MiB) unless they are fixed.
        std::vector<char> big(16U << 20, 'x');
        CHECK(big.back() == 'x');
    }
    const long before = residentBytes();
    long allocated = 0;
    std::thread t([&] {
        // 24 MiB in small blocks on this thread's own heap, then all freed: they merge into
        // the heap's top, which stays resident while it is below the trim threshold.
        auto blocks = smallBlocks(24U << 20);
        allocated = residentBytes() - before;
        while (!blocks.empty()) {
            blocks.pop_back();
        }
    });
    t.join();
    const long after = residentBytes();
    INFO("resident before " << before << ", +" << allocated << " while allocated, after " << after);
    CHECK(allocated > (20L << 20));
    CHECK(after - before < (4L << 20));
#endif
}

TEST_CASE("process statistics read /proc/self: memory, CPU and descriptors", "[process]") {
    const auto a = proxy::readProcessStats();
    REQUIRE(a.has_value());
    CHECK(a->residentBytes > 0);
    CHECK(a->virtualBytes >= a->residentBytes);
    CHECK(a->maxFds > 0);
    // Burn some CPU and open two descriptors: both show.
    volatile double x = 0;
    for (int i = 0; i < 50'000'000; ++i) {
        x = x + 1.0 / (i + 1);
    }
    std::ifstream f1("/proc/self/stat");
    std::ifstream f2("/proc/self/statm");
    const auto b = proxy::readProcessStats();
    REQUIRE(b.has_value());
    CHECK(b->cpuSeconds > a->cpuSeconds);
    CHECK(b->openFds == a->openFds + 2);
}
