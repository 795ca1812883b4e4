#include "proxy/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace kipvs::log {
namespace {

std::atomic<int> gVerbosity{0};
std::atomic<Format> gFormat{Format::Text};
std::atomic<Sink> gSink{nullptr};

void appendJsonString(std::string& out, std::string_view s) {
    out += '"';
    for (const char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

std::string_view baseName(const char* path) {
    std::string_view p(path);
    const auto slash = p.rfind('/');
    return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

}  // namespace

Field::Field(std::string_view k, double v) : key(k), quote(false) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    value = buf;
}

void setVerbosity(int v) {
    gVerbosity = v;
}
int verbosity() {
    return gVerbosity;
}
void setFormat(Format f) {
    gFormat = f;
}
bool enabled(int v) {
    return v <= gVerbosity.load(std::memory_order_relaxed);
}
void setSink(Sink sink) {
    gSink = sink;
}

std::string format(Format f, Severity s, int v, std::string_view msg, Fields fields,
                   SourceLoc loc) {
    timeval tv{};
    gettimeofday(&tv, nullptr);
    std::string out;
    out.reserve(128);
    const auto file = baseName(loc.file);
    if (f == Format::Json) {
        char ts[48];
        std::snprintf(ts, sizeof ts, "%lld.%06ld", static_cast<long long>(tv.tv_sec),
                      static_cast<long>(tv.tv_usec));
        out += "{\"ts\":";
        out += ts;
        out += ",\"caller\":";
        appendJsonString(out, std::string(file) + ":" + std::to_string(loc.line));
        out += ",\"msg\":";
        appendJsonString(out, msg);
        if (s == Severity::Info) {
            out += ",\"v\":" + std::to_string(v);
        } else {
            out += s == Severity::Warning ? ",\"level\":\"warning\"" : ",\"level\":\"error\"";
        }
        for (const auto& fld : fields) {
            out += ',';
            appendJsonString(out, fld.key);
            out += ':';
            if (fld.quote) {
                appendJsonString(out, fld.value);
            } else {
                out += fld.value;
            }
        }
        out += '}';
        return out;
    }
    tm t{};
    gmtime_r(&tv.tv_sec, &t);
    const char sev = s == Severity::Info ? 'I' : s == Severity::Warning ? 'W' : 'E';
    char head[64];
    std::snprintf(head, sizeof head, "%c%02d%02d %02d:%02d:%02d.%06ld %7d ", sev, t.tm_mon + 1,
                  t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<long>(tv.tv_usec),
                  static_cast<int>(getpid()));
    out += head;
    out += file;
    out += ':';
    out += std::to_string(loc.line);
    out += "] ";
    appendJsonString(out, msg);
    for (const auto& fld : fields) {
        out += ' ';
        out += fld.key;
        out += '=';
        if (fld.quote) {
            appendJsonString(out, fld.value);
        } else {
            out += fld.value;
        }
    }
    return out;
}

void write(Severity s, int v, std::string_view msg, Fields fields, SourceLoc loc) {
    std::string line = format(gFormat.load(), s, v, msg, fields, loc);
    if (auto sink = gSink.load()) {
        sink(line);
        return;
    }
    line += '\n';
    static std::mutex mu;
    const std::lock_guard<std::mutex> lock(mu);
    std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace kipvs::log
