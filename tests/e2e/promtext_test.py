#!/usr/bin/env python3
"""The Prometheus text parser must reject what a scraper would trip on (host-side unit test;
prints one TAP line per case)."""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promtext  # noqa: E402

GOOD = """# HELP a_total Things.
# TYPE a_total counter
a_total{k="v",x="a\\"b\\\\c\\nd"} 3
# HELP h Latency.
# TYPE h histogram
h_bucket{le="0.5"} 1
h_bucket{le="1"} 2
h_bucket{le="+Inf"} 3
h_sum 4.5
h_count 3
# TYPE g gauge
g NaN
g{x="1"} -Inf 1700000000000
"""

BAD = {
    "sample before TYPE": "a 1\n",
    "TYPE twice": "# TYPE a gauge\n# TYPE a gauge\na 1\n",
    "TYPE after samples": "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n",
    "bad type": "# TYPE a thing\na 1\n",
    "bad value": "# TYPE a gauge\na one\n",
    "unterminated label": "# TYPE a gauge\na{x=\"1} 1\n",
    "bad escape": "# TYPE a gauge\na{x=\"\\t\"} 1\n",
    "duplicate label": "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",
    "no trailing newline": "# TYPE a gauge\na 1",
    "no +Inf bucket": "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
    "non-cumulative buckets": ("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n"
                               "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"),
    "count disagrees": ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"),
    "bad metric name": "# TYPE 1a gauge\n",
    "garbage line": "# TYPE a gauge\n{} 1\n",
}


def main():
    n = 0
    failed = 0

    def report(ok, name):
        nonlocal n, failed
        n += 1
        failed += 0 if ok else 1
        print(f"{'ok' if ok else 'not ok'} {n} - {name}")

    fams = promtext.parse(GOOD)
    report(promtext.value(fams, "a_total", k="v") == 3 and
           promtext.value(fams, "a_total", x='a"b\\c\nd') == 3, "labels and escapes parse")
    report(fams["h"].type == "histogram" and promtext.value(fams, "h_count") == 3,
           "a well-formed histogram parses")
    report(math.isnan(fams["g"].samples[0][2]) and fams["g"].samples[1][2] == -math.inf,
           "NaN, -Inf and timestamps parse")
    for name, text in BAD.items():
        try:
            promtext.parse(text)
            report(False, f"rejects: {name}")
        except promtext.ParseError:
            report(True, f"rejects: {name}")
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
