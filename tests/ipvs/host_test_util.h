// Helpers shared by the host-side tests of the ipvs library.
#pragma once

#include <catch2/catch.hpp>

#include <string>

namespace kipvs::test {

// REQUIRE(succeeded(r)): true if the Result holds a value; otherwise false, with the error's
// message attached to the failure report (a Result is not printable by Catch).
template <class R>
bool succeeded(const R& r) {
    if (!r.has_value()) {
        UNSCOPED_INFO("error: " << r.error().message);
        return false;
    }
    return true;
}

template <class R>
bool failed(const R& r) {
    return !r.has_value();
}

}  // namespace kipvs::test
