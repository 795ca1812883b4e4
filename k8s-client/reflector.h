// The reflector: client-go's ListAndWatch loop (kubernetes-api.md §4), event by event.
//
// One cycle:
//   1. Watch-list, when enabled and not known to be unsupported: a watch with
//      sendInitialEvents=true&resourceVersionMatch=NotOlderThan. Its initial events replace
//      the delivered state as a set, as a list's pages do (step 2): each object goes out as
//      it arrives, and the objects it did not send are deleted when the BOOKMARK annotated
//      k8s.io/initial-events-end arrives; the same stream then goes on as a normal watch.
//      (client-go holds them until that bookmark instead.) A rejected request (422: the
//      server lacks the feature; remembered), or a stream that ends or breaks (an in-band
//      ERROR, a line that does not decode) before that bookmark, falls back to step 2 at once,
//      within the same cycle (after a 410 or a too-large RV, with RV ""); the list then
//      completes the replace.
//   2. List: resourceVersion "0" the first time, then the last seen RV, or "" after a 410 or
//      a too-large-RV; limit=500 with continue-paging when RV is "" or "0" (or the server
//      paginated before). A 410 on a continue page retries once as a full list without limit;
//      a 410 or too-large RV on a list at an RV lists again at once at RV "", as client-go does.
//      The pages replace the delivered state as a set: each listed object goes out as it
//      is decoded (an add, an update if it changed, nothing if not), and the objects that
//      were not listed are deleted when the last page is in. A list that fails halfway has
//      delivered only whole, real object versions; the next list completes the replace.
//   3. Watch from that RV with allowWatchBookmarks=true and timeoutSeconds in [300, 600).
//      Every event and bookmark records its RV. A clean end, a reset or an idle timeout
//      re-watches at once from the last RV, except a "very short watch" (< 1 s, no event),
//      which is an error. 429 or connection refused on the watch request: back off and
//      re-watch at the same RV. An in-band ERROR (410 included), a garbled line, an unknown
//      event type or a partial line at the end of the stream: the cycle ends.
// Between cycles: exponential backoff (Backoff, 800 ms doubling to 30 s, jittered, reset
// after 2 min without use), as wait.BackoffUntil does in client-go.
//
// What is kept per object is its key and a content hash of what was last delivered, so that
// an update that changes nothing the consumer sees, or an unchanged object in a relist,
// produces no callback.
#pragma once

#include <memory>
#include <string>

#include "k8s-client/clock.h"
#include "k8s-client/handler.h"
#include "k8s-client/informer.h"
#include "k8s-client/observer.h"
#include "k8s-client/policy.h"
#include "k8s-client/rest.h"

namespace kipvs::k8s {

struct ResourceSpec {
    Kind kind = Kind::Service;
    std::string path;  // collection path, e.g. "/api/v1/services"
    std::string labelSelector;
    std::string fieldSelector;
};

struct ReflectorOptions {
    bool watchList = true;
    int pageSize = 500;
    // timeoutSeconds is uniform in [min, 2*min).
    Duration minWatchTimeout = std::chrono::minutes(5);
    // Added to timeoutSeconds to give the watch's idle deadline.
    Duration watchIdleSlack = std::chrono::seconds(60);
    Duration veryShortWatch = std::chrono::seconds(1);
    BackoffParams backoff;
};

template <class T>
std::unique_ptr<Informer<T>> makeReflector(RestClient& rest, Clock& clock, RandomFn random,
                                           Observer* observer, ResourceSpec spec,
                                           ReflectorOptions options, EventHandler<T>& handler);

extern template std::unique_ptr<Informer<Service>> makeReflector<Service>(RestClient&, Clock&,
                                                                          RandomFn, Observer*,
                                                                          ResourceSpec,
                                                                          ReflectorOptions,
                                                                          EventHandler<Service>&);
extern template std::unique_ptr<Informer<EndpointSlice>> makeReflector<EndpointSlice>(
    RestClient&, Clock&, RandomFn, Observer*, ResourceSpec, ReflectorOptions,
    EventHandler<EndpointSlice>&);
extern template std::unique_ptr<Informer<Node>> makeReflector<Node>(RestClient&, Clock&, RandomFn,
                                                                    Observer*, ResourceSpec,
                                                                    ReflectorOptions,
                                                                    EventHandler<Node>&);

}  // namespace kipvs::k8s
