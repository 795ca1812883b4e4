// What the client reports for the daemon's logs and metrics. The library never logs itself;
// every hook is optional (default no-op) and is called on the client's thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "k8s-client/decode.h"
#include "k8s-client/objects.h"

namespace kipvs::k8s {

class Observer {
  public:
    virtual ~Observer() = default;

    // An object was rejected (wholeObject) or an entry of it dropped; `message` is the
    // complete reason ("Service default/web: spec.ports[1].port: 70000 is not a valid port").
    virtual void onInvalid(Kind /*kind*/, const ObjectKey& /*key*/, const Issue& /*issue*/,
                           bool /*wholeObject*/, const std::string& /*message*/) {}
    // An object was delivered (added or changed), or its anomalies changed, and it holds
    // something unusual that was handled rather than rejected (decode.h: Note). Reported once
    // per such change, not again when a relist or resync finds it unchanged. `code` is the
    // Note's stable code; `message` is complete as for onInvalid.
    virtual void onHandled(Kind /*kind*/, const ObjectKey& /*key*/, std::string_view /*code*/,
                           const Issue& /*issue*/, const std::string& /*message*/) {}
    // A watch event was skipped: its object is of another kind (FS-40).
    virtual void onSkippedEvent(Kind /*kind*/, const std::string& /*message*/) {}
    // A request failed (after the transparent retries, which are reported by onRetry).
    // `op` is "list", "watch" or "watch-list".
    virtual void onRequestError(Kind /*kind*/, std::string_view /*op*/, int /*httpStatus*/,
                                const std::string& /*message*/) {}
    // A transparent retry of a request was scheduled (429/5xx with Retry-After, reset).
    virtual void onRetry(std::string_view /*target*/, const std::string& /*reason*/,
                         double /*delaySeconds*/) {}
    // A list (initial or re-list) starts. `resourceVersion` is what it asks for ("0", "",
    // or the last seen RV); `reason` is why ("initial", or the error that ended the last cycle).
    virtual void onList(Kind /*kind*/, const std::string& /*resourceVersion*/,
                        const std::string& /*reason*/) {}
    // A watch starts (after a list, or again after the previous one closed).
    virtual void onWatch(Kind /*kind*/, const std::string& /*resourceVersion*/,
                         const std::string& /*reason*/) {}
    // The list+watch cycle failed and the next one starts after `delaySeconds`.
    virtual void onBackoff(Kind /*kind*/, const std::string& /*reason*/, double /*delaySeconds*/) {}
    // Watch-list was rejected and the informer falls back to list+watch.
    virtual void onWatchListFallback(Kind /*kind*/, const std::string& /*reason*/) {}
    virtual void onSynced(Kind /*kind*/, std::size_t /*objects*/) {}
    // Traffic: body bytes and watch events (of any type) received.
    virtual void onBytes(Kind /*kind*/, std::size_t /*n*/) {}
    virtual void onEvent(Kind /*kind*/, std::string_view /*type*/) {}
};

}  // namespace kipvs::k8s
