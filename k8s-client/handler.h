// What a consumer of the watch client implements. All calls arrive on the client's one
// io_context thread, in the order the changes happened.
#pragma once

#include "k8s-client/objects.h"

namespace kipvs::k8s {

template <class T>
class EventHandler {
  public:
    virtual ~EventHandler() = default;
    // A new object, or one seen again after it was deleted.
    virtual void onAdd(const T& obj) = 0;
    // A changed object (the new state). Updates that leave the decoded object equal to what
    // was last delivered are not delivered.
    virtual void onUpdate(const T& obj) = 0;
    // The object is gone: deleted, no longer matching the selector, vanished across a relist,
    // or its latest version was rejected as invalid.
    virtual void onDelete(const ObjectKey& key) = 0;
    // The first complete list has been delivered. Called once.
    virtual void onSynced() = 0;
};

}  // namespace kipvs::k8s
