// Incremental parser of a list response ({"kind":..,"metadata":{..},"items":[..]}) that hands
// out one item at a time as its closing brace arrives, so that a 44,000-item list never exists
// as one DOM: only the item being parsed does. The top-level members other than `items` are
// small and kept.
#pragma once

#include <boost/json/fwd.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace kipvs::k8s {

class ListParser {
  public:
    using ItemFn = std::function<void(boost::json::value&& item)>;

    explicit ListParser(ItemFn onItem);
    ~ListParser();
    ListParser(const ListParser&) = delete;
    ListParser& operator=(const ListParser&) = delete;

    // Feeds body bytes; false on a JSON error (see error()).
    bool feed(std::string_view bytes);
    // End of body; false if the document is incomplete or not an object.
    bool finish();
    void reset();

    const std::string& error() const;
    // Top-level fields, valid after finish().
    const std::string& kind() const;
    const std::string& resourceVersion() const;
    const std::string& continueToken() const;
    std::size_t items() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kipvs::k8s
