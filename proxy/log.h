// Logging in kube-proxy's style: klog text lines by default, one JSON object per line with
// --logging-format=json. Verbosity follows -v: info messages at level > v are dropped.
//
//   I1124 20:43:05.123456    4242 reconciler.cpp:88] "Synced" service="default/web" ops=3
//   {"ts":1764017000.123,"caller":"reconciler.cpp:88","msg":"Synced","v":0,"service":"default/web","ops":3}
//
// Libraries below the daemon (ipvs/, k8s-client/) never log: they return errors and events,
// and the daemon logs them once, where they are handled.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace kipvs::log {

enum class Severity { Info, Warning, Error };

// The caller's file and line. std::source_location would do, but clang 14 (clang-tidy and the
// fuzz builds) cannot compile libstdc++'s version of it; these builtins work in both compilers.
struct SourceLoc {
    const char* file;
    int line;
    static SourceLoc current(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
        return {file, line};
    }
};
enum class Format { Text, Json };

struct Field {
    Field(std::string_view k, std::string_view v) : key(k), value(v), quote(true) {}
    Field(std::string_view k, const std::string& v) : key(k), value(v), quote(true) {}
    Field(std::string_view k, const char* v) : key(k), value(v), quote(true) {}
    Field(std::string_view k, long long v) : key(k), value(std::to_string(v)), quote(false) {}
    Field(std::string_view k, unsigned long long v)
        : key(k), value(std::to_string(v)), quote(false) {}
    Field(std::string_view k, int v) : key(k), value(std::to_string(v)), quote(false) {}
    Field(std::string_view k, unsigned v) : key(k), value(std::to_string(v)), quote(false) {}
    Field(std::string_view k, long v) : key(k), value(std::to_string(v)), quote(false) {}
    Field(std::string_view k, unsigned long v) : key(k), value(std::to_string(v)), quote(false) {}
    Field(std::string_view k, double v);
    Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), quote(false) {}

    std::string_view key;
    std::string value;
    bool quote;
};

using Fields = std::initializer_list<Field>;

void setVerbosity(int v);
int verbosity();
void setFormat(Format f);
bool enabled(int v);

// Where lines go; stderr unless a test captures them.
using Sink = void (*)(std::string_view line);
void setSink(Sink sink);

// Formats one line; exposed for tests.
std::string format(Format f, Severity s, int v, std::string_view msg, Fields fields, SourceLoc loc);

void write(Severity s, int v, std::string_view msg, Fields fields,
           SourceLoc loc = SourceLoc::current());

inline void info(std::string_view msg, Fields fields = {}, SourceLoc loc = SourceLoc::current()) {
    write(Severity::Info, 0, msg, fields, loc);
}
inline void warning(std::string_view msg, Fields fields = {},
                    SourceLoc loc = SourceLoc::current()) {
    write(Severity::Warning, 0, msg, fields, loc);
}
inline void error(std::string_view msg, Fields fields = {}, SourceLoc loc = SourceLoc::current()) {
    write(Severity::Error, 0, msg, fields, loc);
}
// Info at verbosity v (klog's V(v).Info): dropped unless -v >= v.
inline void debug(int v, std::string_view msg, Fields fields = {},
                  SourceLoc loc = SourceLoc::current()) {
    if (enabled(v)) {
        write(Severity::Info, v, msg, fields, loc);
    }
}

}  // namespace kipvs::log
