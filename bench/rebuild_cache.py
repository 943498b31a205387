"""Rebuild after a pip-only change on a spec with a heavy APT layer, against its cold build.
Each run uses a fresh base image, so the first build is cold after FROM. Target: the
rebuild takes at most 40% of the cold build's time.

    .venv/bin/python bench/rebuild_cache.py         (BENCH_RUNS=2 by default)
"""
import os

from _stack import change_spec, job_seconds, save_spec, started_stack, statistics, succeeded, unique_base

RUNS = int(os.environ.get("BENCH_RUNS", "2"))
HEAVY_APT = "gcc\ng++\nmake\nlibc6-dev\n"


def main():
    stack = started_stack()
    try:
        ratios = []
        for run in range(RUNS):
            name = f"heavy-{run}"
            cold = succeeded(stack, save_spec(stack, name=name, base_image=unique_base(stack, name), apt=HEAVY_APT,
                                              pip="six"))
            warm = succeeded(stack, change_spec(stack, name, pip="six\nidna\n"))
            assert "Using cache" in stack.log_text(warm.id)
            ratios.append(job_seconds(warm) / job_seconds(cold))
            print(f"run {run + 1}/{RUNS}: cold {job_seconds(cold):.1f}s, pip-only rebuild {job_seconds(warm):.1f}s, "
                  f"{ratios[-1]:.0%} of cold", flush=True)
        print(f"rebuild after a pip-only change: median {statistics.median(ratios):.0%} of the cold build "
              f"(target <= 40%) over {RUNS} runs")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
