#include "ipvs/names.h"

namespace kipvs::names {

std::string setName(std::string_view base, net::Family f) {
    if (f == net::Family::V4) {
        return std::string(base);
    }
    constexpr std::string_view prefix = "KUBE-";
    std::string name = "KUBE-6-";
    name += base.substr(base.starts_with(prefix) ? prefix.size() : 0);
    if (name.size() > 31) {
        name.resize(31);
    }
    return name;
}

}  // namespace kipvs::names
