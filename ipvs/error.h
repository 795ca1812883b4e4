// Errors as values.
//
// Everything the environment can cause (a kernel refusal, a missing object, a bad reply, a
// tool that exits non-zero) is returned, never thrown. An Error carries the errno-style code
// for callers that branch on it and a message that names the operation and the object, e.g.
//   add-dest 10.96.0.10:53/UDP -> 10.244.1.7:53: No such process
// so that whoever handles it can log it once, as is.
#pragma once

#include <boost/system/result.hpp>

#include <iosfwd>
#include <string>
#include <system_error>
#include <utility>

namespace kipvs {

struct Error {
    std::error_code code;
    std::string message;

    Error() = default;
    Error(std::error_code c, std::string m) : code(c), message(std::move(m)) {}
    // errno value + message.
    static Error sys(int err, std::string what);
    // A failure with no errno behind it (malformed reply, bad input): EINVAL/EPROTO-coded.
    static Error invalid(std::string what);
    static Error protocol(std::string what);

    // "what: message", for wrapping an error from a lower layer with more context.
    Error context(const std::string& what) const;
};

// Lets results and errors print (boost::system::result's operator<< and test frameworks
// need it).
std::ostream& operator<<(std::ostream& os, const Error& e);

template <class T>
using Result = boost::system::result<T, Error>;

// Result<void> success value: `return ok();`
inline Result<void> ok() {
    return {};
}

// What boost::system::result::value() throws when called on an error. Code here checks
// results before using them; this exists so that a missed check is loud, not undefined.
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

}  // namespace kipvs
