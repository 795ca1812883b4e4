// Splits a watch response body into lines of events.
//
// The API server writes one JSON document per line, but HTTP chunk boundaries fall anywhere:
// several events can share a chunk and one event can span many. The framer owns the buffer, so
// the transport can hand it whatever bytes arrived. client-go reads the body as a sequence of
// JSON values, so the reflector also accepts several events on one line and a last event with
// no '\n' before the stream's end (takeRest()). Events are taken a line at a time, though: a
// stream with no newlines at all is applied only when it ends, and an event spread over
// several lines is not accepted.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kipvs::k8s {

class LineFramer {
  public:
    // A line longer than this is an error, not an allocation: a watch event of a Service with
    // 10,000 ports and 1 MB of annotations is still far below it.
    static constexpr std::size_t kDefaultMaxLine = 64u << 20;

    explicit LineFramer(std::size_t maxLine = kDefaultMaxLine) : maxLine_(maxLine) {}

    // Appends body bytes. Returns false once the pending, unterminated line exceeds the limit;
    // the framer then stays failed until reset().
    bool feed(std::string_view bytes);

    // Takes the next complete line (without its '\n'; a trailing '\r' is kept, JSON ignores it)
    // into `line`. Empty lines are skipped. Returns false when no complete line is buffered.
    bool next(std::string& line);

    // Takes the unterminated tail (at the end of the stream: it may hold a last event with no
    // '\n'). Returns false, leaving `line` alone, when it is empty or blank.
    bool takeRest(std::string& line);

    // Bytes of an unterminated line; non-zero at end of stream means a partial event.
    std::size_t pending() const { return buf_.size() - pos_; }
    bool failed() const { return failed_; }
    void reset();

  private:
    std::string buf_;
    std::size_t pos_ = 0;   // start of the first unconsumed byte
    std::size_t scan_ = 0;  // bytes before this (from pos_) hold no '\n'
    std::size_t maxLine_;
    bool failed_ = false;
};

}  // namespace kipvs::k8s
