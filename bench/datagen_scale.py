"""Benchmark: the generator streams to disk, so memory stays bounded as the shop grows.

Generates the orders and customers feeds at two scales in child processes and prints rows,
seconds and peak memory of each, and the ratios. Usage:
    .venv/bin/python bench/datagen_scale.py [--customers 100000 1000000] [--days 300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
from pathlib import Path
from mlscale.local.datagen import ShopParams, generate
t0 = time.monotonic()
stats = generate(ShopParams(customers=int(sys.argv[1]), days=int(sys.argv[2]), feeds=("orders", "customers")),
                 Path(sys.argv[3]), progress_every=0)
print(json.dumps({"orders": stats.rows["orders"], "customers": stats.rows["customers"],
                  "seconds": time.monotonic() - t0,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=300)
    args = parser.parse_args()
    results = []
    for customers in args.customers:
        out = tempfile.mkdtemp(prefix="mlscale-bench-")
        try:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(customers), str(args.days), out],
                                  capture_output=True, text=True, check=True)
            du = subprocess.run(["du", "-sm", out], capture_output=True, text=True).stdout.split()[0]
        finally:
            shutil.rmtree(out, ignore_errors=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r.update(customers_param=customers, disk_mib=int(du))
        results.append(r)
        print(f"{customers:>9} customers: {r['orders']:>10} orders, {r['seconds']:7.1f} s, "
              f"peak memory {r['peak_mib']:7.0f} MiB, {r['disk_mib']} MiB of CSV", flush=True)
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"ratio {b['customers_param'] / a['customers_param']:.0f}x customers: "
              f"{b['orders'] / a['orders']:.1f}x orders, {b['seconds'] / a['seconds']:.1f}x time, "
              f"{b['peak_mib'] / a['peak_mib']:.2f}x peak memory")


if __name__ == "__main__":
    main()
