// Shared by the libFuzzer targets (tests/fuzz/fuzz_*.cpp) and by the regression test that
// replays their corpora and reproducers through the very same entry points.
//
// Each target is a function `int target(const std::uint8_t*, std::size_t)` here; its
// fuzz_*.cpp defines LLVMFuzzerTestOneInput to call it unless KIPVS_FUZZ_REGRESSION is set.
// An invariant that does not hold is a crash under libFuzzer (abort(), so the input is saved)
// and an exception in the regression binary (so Catch2 names the input and goes on).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kipvs::fuzz {

int watchStream(const std::uint8_t* data, std::size_t size);
int objects(const std::uint8_t* data, std::size_t size);
int kubeconfig(const std::uint8_t* data, std::size_t size);
int proxyConfig(const std::uint8_t* data, std::size_t size);
int ipvsNetlink(const std::uint8_t* data, std::size_t size);

struct InvariantFailure : std::logic_error {
    using std::logic_error::logic_error;
};

[[noreturn]] inline void fail(const std::string& what) {
#ifdef KIPVS_FUZZ_REGRESSION
    throw InvariantFailure(what);
#else
    std::fprintf(stderr, "fuzz invariant failed: %s\n", what.c_str());
    std::abort();
#endif
}

inline void check(bool cond, const char* expr, const char* file, int line,
                  const std::string& detail = {}) {
    if (!cond) {
        fail(std::string(file) + ":" + std::to_string(line) + ": " + expr +
             (detail.empty() ? "" : " (" + detail + ")"));
    }
}

#define FUZZ_CHECK(cond) ::kipvs::fuzz::check((cond), #cond, __FILE__, __LINE__)
#define FUZZ_CHECK_MSG(cond, detail) \
    ::kipvs::fuzz::check((cond), #cond, __FILE__, __LINE__, (detail))

// Deterministic choices derived from the input, so that a saved input replays the same way.
class Choices {
  public:
    explicit Choices(std::uint64_t seed)
        : s_(seed * 0x9e3779b97f4a7c15ULL + 0x2545f4914f6cdd1dULL) {}
    std::uint64_t next() {
        // xorshift64*
        s_ ^= s_ >> 12;
        s_ ^= s_ << 25;
        s_ ^= s_ >> 27;
        return s_ * 0x2545f4914f6cdd1dULL;
    }
    // Uniform enough in [lo, hi].
    std::size_t range(std::size_t lo, std::size_t hi) {
        return lo + static_cast<std::size_t>(next() % (hi - lo + 1));
    }

  private:
    std::uint64_t s_;
};

// Splits `s` into chunks of 1..maxChunk bytes chosen by `c` (maxChunk 0: one chunk).
inline std::vector<std::string_view> chunks(std::string_view s, Choices& c, std::size_t maxChunk) {
    std::vector<std::string_view> out;
    if (maxChunk == 0) {
        out.push_back(s);
        return out;
    }
    std::size_t pos = 0;
    while (pos < s.size()) {
        const std::size_t n = std::min(s.size() - pos, c.range(1, maxChunk));
        out.push_back(s.substr(pos, n));
        pos += n;
    }
    return out;
}

}  // namespace kipvs::fuzz
