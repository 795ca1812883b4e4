#include "ipvs/error.h"

#include <cerrno>
#include <ostream>
#include <stdexcept>

namespace kipvs {

Error Error::sys(int err, std::string what) {
    std::error_code ec(err, std::generic_category());
    return {ec, std::move(what) + ": " + ec.message()};
}

Error Error::invalid(std::string what) {
    return {std::error_code(EINVAL, std::generic_category()), std::move(what)};
}

Error Error::protocol(std::string what) {
    return {std::error_code(EPROTO, std::generic_category()), std::move(what)};
}

Error Error::context(const std::string& what) const {
    return {code, what + ": " + message};
}

std::ostream& operator<<(std::ostream& os, const Error& e) {
    return os << e.message;
}

void throw_exception_from_error(const Error& e, const boost::source_location& /*loc*/) {
    throw std::runtime_error(e.message);
}

}  // namespace kipvs
