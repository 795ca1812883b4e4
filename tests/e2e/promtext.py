"""A strict parser of the Prometheus text exposition format (version 0.0.4).

Strict on purpose: tests use it to prove /metrics is well formed, so anything a real scraper
could trip on is an error: a sample before its TYPE, a TYPE given twice, a bad metric or label
name, an unterminated or badly escaped label value, a value that is not a float, histogram
buckets that are not cumulative or lack +Inf, or _count disagreeing with the +Inf bucket.

    families = parse(text)       # {name: Family}
    families["kubeproxy_sync_proxy_rules_duration_seconds"].type == "histogram"
    value(families, "kube_ipvs_virtual_servers", ip_family="IPv4")
"""
import math
import re

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class ParseError(ValueError):
    pass


class Family:
    def __init__(self, name):
        self.name = name
        self.type = None
        self.help = None
        self.samples = []  # (sample name, {labels}, value)


def _parse_value(text, lineno):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"line {lineno}: {text!r} is not a float value")


def _parse_labels(text, lineno):
    """text starts after '{'; returns (labels, rest after '}')."""
    labels = {}
    i = 0
    while True:
        if i < len(text) and text[i] == "}":
            return labels, text[i + 1:]
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", text[i:])
        if not m:
            raise ParseError(f"line {lineno}: bad label at {text[i:i + 20]!r}")
        name = m.group(1)
        i += m.end()
        value = []
        while True:
            if i >= len(text):
                raise ParseError(f"line {lineno}: unterminated value of label {name}")
            c = text[i]
            if c == "\\":
                if i + 1 >= len(text) or text[i + 1] not in "\\\"n":
                    raise ParseError(f"line {lineno}: bad escape in label {name}")
                value.append("\n" if text[i + 1] == "n" else text[i + 1])
                i += 2
                continue
            if c == "\"":
                i += 1
                break
            if c == "\n":
                raise ParseError(f"line {lineno}: newline in label {name}")
            value.append(c)
            i += 1
        if name in labels:
            raise ParseError(f"line {lineno}: label {name} given twice")
        labels[name] = "".join(value)
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] == "}":
            continue
        else:
            raise ParseError(f"line {lineno}: expected ',' or '}}' after label {name}")


def _family_of(sample, families):
    for suffix in ("_bucket", "_sum", "_count", ""):
        if suffix and not sample.endswith(suffix):
            continue
        base = sample[: len(sample) - len(suffix)] if suffix else sample
        f = families.get(base)
        if f is not None and (not suffix or f.type in ("histogram", "summary")):
            return f
    return None


def parse(text):
    if text and not text.endswith("\n"):
        raise ParseError("the exposition does not end with a newline")
    families = {}
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    raise ParseError(f"line {lineno}: bad metric name {name!r}")
                f = families.setdefault(name, Family(name))
                if parts[1] == "TYPE":
                    t = parts[3] if len(parts) > 3 else ""
                    if t not in TYPES:
                        raise ParseError(f"line {lineno}: bad type {t!r}")
                    if f.type is not None:
                        raise ParseError(f"line {lineno}: TYPE of {name} given twice")
                    if f.samples:
                        raise ParseError(f"line {lineno}: TYPE of {name} after its samples")
                    f.type = t
                else:
                    if f.help is not None:
                        raise ParseError(f"line {lineno}: HELP of {name} given twice")
                    f.help = parts[3] if len(parts) > 3 else ""
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$", line)
        if not m:
            raise ParseError(f"line {lineno}: not a sample: {line!r}")
        sample, rest = m.group(1), m.group(2)
        labels = {}
        if rest.startswith("{"):
            labels, rest = _parse_labels(rest[1:], lineno)
        fields = rest.split()
        if len(fields) not in (1, 2) or not rest.startswith(" "):
            raise ParseError(f"line {lineno}: expected ' value [timestamp]' in {line!r}")
        value = _parse_value(fields[0], lineno)
        f = _family_of(sample, families)
        if f is None:
            raise ParseError(f"line {lineno}: sample {sample} has no TYPE before it")
        f.samples.append((sample, labels, value))
    for f in families.values():
        if f.type == "histogram":
            _check_histogram(f)
    return families


def _check_histogram(f):
    series = {}
    for sample, labels, value in f.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "count": None, "sum": None})
        if sample == f.name + "_bucket":
            if "le" not in labels:
                raise ParseError(f"{f.name}: bucket without le")
            s["buckets"].append((_parse_value(labels["le"], 0), value))
        elif sample == f.name + "_count":
            s["count"] = value
        elif sample == f.name + "_sum":
            s["sum"] = value
        else:
            raise ParseError(f"{f.name}: unexpected sample {sample} in a histogram")
    for key, s in series.items():
        bs = s["buckets"]
        if not bs or bs[-1][0] != math.inf:
            raise ParseError(f"{f.name}{dict(key)}: no +Inf bucket last")
        if [b for b, _ in bs] != sorted(b for b, _ in bs):
            raise ParseError(f"{f.name}{dict(key)}: buckets out of order")
        counts = [c for _, c in bs]
        if counts != sorted(counts):
            raise ParseError(f"{f.name}{dict(key)}: bucket counts not cumulative")
        if s["count"] is None or s["sum"] is None:
            raise ParseError(f"{f.name}{dict(key)}: _count or _sum missing")
        if s["count"] != counts[-1]:
            raise ParseError(f"{f.name}{dict(key)}: _count {s['count']} != +Inf {counts[-1]}")


def value(families, name, **labels):
    """The value of the one sample of `name` whose labels include `labels`; None if absent."""
    found = None
    for f in families.values():
        for sample, ls, v in f.samples:
            if sample == name and all(ls.get(k) == str(val) for k, val in labels.items()):
                if found is not None:
                    raise ParseError(f"{name}{labels}: more than one sample matches")
                found = v
    return found


def total(families, name, **labels):
    """Sum of every sample of `name` whose labels include `labels` (0 if none)."""
    t = 0.0
    for f in families.values():
        for sample, ls, v in f.samples:
            if sample == name and all(ls.get(k) == str(val) for k, val in labels.items()):
                t += v
    return t
