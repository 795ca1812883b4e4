// One informer per resource: list+watch kept in sync with the server, delivering
// EventHandler<T> callbacks on the client's thread (see reflector.h for the algorithm).
#pragma once

#include <cstddef>

namespace kipvs::k8s {

template <class T>
class Informer {
  public:
    // Destruction stops the informer: no callback after it.
    virtual ~Informer() = default;
    // Starts the first list (or watch-list) at once.
    virtual void start() = 0;
    // The first complete list has been delivered (EventHandler::onSynced was called).
    virtual bool hasSynced() const = 0;
    // Objects currently delivered to the handler (added and not deleted).
    virtual std::size_t size() const = 0;
};

}  // namespace kipvs::k8s
