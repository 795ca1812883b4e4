// The one Catch2 main shared by every test binary, with a TAP reporter that prints one line per
// test case ("-r tapcases"). Catch2's own TAP reporter prints one line per assertion, which
// makes meson count (and print) millions of "subtests"; CI's closing line counts test cases.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <iostream>
#include <ostream>
#include <sstream>
#include <string>

namespace {

class CaseTapReporter : public Catch::StreamingReporterBase<CaseTapReporter> {
  public:
    using StreamingReporterBase::StreamingReporterBase;

    static std::string getDescription() { return "TAP with one line per test case"; }

    void noMatchingTestCases(const std::string& spec) override {
        stream << "# no test cases match " << spec << '\n';
    }

    void assertionStarting(const Catch::AssertionInfo& /*info*/) override {}

    bool assertionEnded(const Catch::AssertionStats& stats) override {
        const auto& r = stats.assertionResult;
        if (r.isOk()) {
            return true;
        }
        std::ostringstream msg;
        msg << r.getSourceInfo() << ": failed";
        if (r.hasExpression()) {
            msg << ": " << r.getExpressionInMacro()
                << "\nwith expansion: " << r.getExpandedExpression();
        }
        if (r.hasMessage()) {
            msg << "\n" << r.getMessage();
        }
        for (const auto& info : stats.infoMessages) {
            msg << "\nwith message: " << info.message;
        }
        // stderr, so meson's --print-errorlogs shows why; stdout carries only the TAP lines.
        Catch::cerr() << msg.str() << "\n\n";
        return true;
    }

    void testCaseEnded(const Catch::TestCaseStats& stats) override {
        ++count_;
        const bool ok = stats.totals.assertions.failed == stats.totals.assertions.failedButOk;
        stream << (ok ? "ok " : "not ok ") << count_ << " - " << stats.testInfo.name << '\n';
        if (!stats.stdOut.empty()) {
            comment(stats.stdOut);
        }
        stream.flush();
        StreamingReporterBase::testCaseEnded(stats);
    }

    void testRunEnded(const Catch::TestRunStats& stats) override {
        stream << "1.." << count_ << '\n';
        StreamingReporterBase::testRunEnded(stats);
    }

  private:
    void comment(const std::string& text) {
        std::istringstream in(text);
        std::string line;
        while (std::getline(in, line)) {
            stream << "# " << line << '\n';
        }
    }

    int count_ = 0;
};

}  // namespace

CATCH_REGISTER_REPORTER("tapcases", CaseTapReporter)
