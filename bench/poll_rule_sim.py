#!/usr/bin/python3
"""Simulates the adaptive polling rule (net/poll_planner.hpp) on a known
log-uniform latency spread, without jitter or network time, to compare gap
caps and the best two-speed schedule a grid search finds at <= 8 GETs for the
60 s samples. Quoted in docs/benchmarks.md, "Completion notice".

Usage: bench/poll_rule_sim.py [lo_s hi_s]      (default 5 120)
"""
import bisect
import math
import random
import sys

lo, hi = (float(sys.argv[1]), float(sys.argv[2])) if len(sys.argv) == 3 else (5.0, 120.0)
random.seed(1)
latencies = sorted(math.exp(random.uniform(math.log(lo), math.log(hi))) for _ in range(40000))


def cdf(t):
    return 0.0 if t < lo else 1.0 if t > hi else math.log(t / lo) / math.log(hi / lo)


def quantile(q):
    return lo * (hi / lo) ** q


def evaluate(polls):
    """(p50 delay, p99 delay, mean GETs of the 50-70 s samples)."""
    delays, gets_60 = [], []
    for l in latencies:
        i = bisect.bisect_left(polls, l)
        delays.append(polls[i] - l)
        if 50 <= l <= 70:
            gets_60.append(i + 1)
    delays.sort()
    return (delays[len(delays) // 2], delays[int(len(delays) * 0.99)],
            sum(gets_60) / max(1, len(gets_60)))


def rule(polls=8, first_poll=1.0, max_poll=5.0, factor=2.5):
    """The planner's rule; after the plan, gaps of max_poll (growth capped)."""
    m, cap = 1.0 / polls, max_poll * factor
    t = max(first_poll, quantile(m))
    out = [t]
    while t < hi * 2:
        if cdf(t) < 0.99:
            gap = min(max(quantile(min(1.0, cdf(t) + m)) - t, first_poll), cap)
        else:
            gap = max_poll
        t += gap
        out.append(t)
    return out


def two_speed(first, fast, until, slow):
    t, out = first, [first]
    while t < hi * 2:
        t += fast if t < until else slow
        out.append(t)
    return out


print(f"log-uniform {lo:g}-{hi:g} s, priority timing (first poll 1 s, max poll 5 s)")
for factor in (1.0, 2.0, 2.5, 3.0):
    p50, p99, g = evaluate(rule(factor=factor))
    print(f"rule, polls 8, gap cap {factor:g} x max poll: GETs@60s {g:5.2f}  p50 {p50:4.2f} s  p99 {p99:5.2f} s")
best = min((evaluate(two_speed(f, a, u, b)) + (f, a, u, b)
            for f in (5, 6, 7, 8) for a in (2, 3, 4, 5, 6)
            for u in (10, 15, 20, 25, 30, 40) for b in (8, 10, 12, 15, 20, 25, 30)
            if evaluate(two_speed(f, a, u, b))[2] <= 8), key=lambda r: r[0])
print(f"best two-speed schedule at <= 8 GETs@60s (first {best[3]} s, every {best[4]} s until "
      f"{best[5]} s, then every {best[6]} s): p50 {best[0]:.2f} s  p99 {best[1]:.2f} s  "
      f"GETs@60s {best[2]:.2f}")
