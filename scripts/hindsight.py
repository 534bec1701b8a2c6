#!/usr/bin/env python3
"""What any threshold policy could at most save on a recorded trace (docs/decisions.md,
"What any threshold policy could save").

Splits the trace into stretches of STRETCH requests and in each picks, in hindsight, the subset
of up to three ramps and per-ramp thresholds that saves most: ramps taken shallowest first,
each threshold just above the (ALLOW+1)-th most confident disagreeing answer left to that ramp.
Latency is priced as `apparate` replay prices it (docs/trace-format.md).

Usage: scripts/hindsight.py TRACE PROFILE [--stretch 1280] [--allow 0]   (needs PyYAML)
"""
import argparse
import itertools
import json
import statistics

import yaml


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("profile")
    ap.add_argument("--stretch", type=int, default=1280, help="requests per stretch")
    ap.add_argument("--allow", type=int, default=0, help="disagreeing exits allowed per ramp and stretch")
    args = ap.parse_args()
    prof = yaml.safe_load(open(args.profile))
    sizes = prof["batch_sizes"]

    def at(values, batch):  # the profiled value at the largest batch size <= batch
        i = max([j for j, b in enumerate(sizes) if b <= batch] or [0])
        return values[i]

    rows = [json.loads(line) for line in open(args.trace) if line.strip()]
    n_ramps = len(prof["ramps"])
    savings = []
    for start in range(0, len(rows), args.stretch):
        part = rows[start:start + args.stretch]
        batch = part[0]["batch_size"]
        full = at(prof["full_model_ms"], batch)
        outs = [{o["id"]: o for o in r["ramps"]} for r in part]
        best = None
        for k in (1, 2, 3):
            for subset in itertools.combinations(range(n_ramps), k):
                left, latency, paid = range(len(part)), [0.0] * len(part), 0.0
                for r in subset:
                    paid += at(prof["ramps"][r]["ramp_ms"], batch)
                    wrong = sorted(outs[i][r]["confidence"] for i in left
                                   if outs[i][r]["label"] != part[i]["final_label"])
                    t = wrong[-1 - args.allow] if len(wrong) > args.allow else 0.0
                    stay = []
                    for i in left:
                        if outs[i][r]["confidence"] > t:
                            latency[i] = at(prof["ramps"][r]["backbone_ms"], batch) + paid
                        else:
                            stay.append(i)
                    left = stay
                for i in left:
                    latency[i] = full + paid
                s = [1 - x / full for x in latency]
                if best is None or sum(s) > sum(best[1]):
                    best = (subset, s)
        savings += best[1]
        print(f"stretch {start // args.stretch}: ramps {best[0]}, "
              f"p50 {100 * statistics.median(best[1]):.1f} %, mean {100 * statistics.fmean(best[1]):.1f} %")
    print(f"whole trace: p50 saving {100 * statistics.median(savings):.1f} %, "
          f"mean {100 * statistics.fmean(savings):.1f} %")


if __name__ == "__main__":
    main()
