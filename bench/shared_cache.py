"""The shared layer cache across two build hosts (two rootless users on this machine,
scripts/podman-rootless.sh --second-host), one worker each, one Redis and database.

Per run, on a fresh base image pushed to the registry (both hosts pull it):
- a cold build of a spec with a heavy APT layer on host A, pushing the shared cache,
  and another cold one with BUILD_CACHE=local (the overhead of pushing the cache);
- a pip-only change of each built on host B: the first with the shared cache, the
  second without it (BUILD_CACHE=local), in alternating order. B pulls the base image
  before (untimed): a common base is on every build host already, and pulling it takes
  as long with the cache as without.
Prints both rebuilds as ratios of the cold build. Targets: shared at most 0.25 of cold
(goal 0.10), the cache push at most 10% on a cold build.

    .venv/bin/python bench/shared_cache.py        (BENCH_RUNS=3 by default)
"""
import os
import subprocess
import time

from _stack import REPO, change_spec, job_seconds, save_spec, started_stack, statistics, succeeded, unique_base
from integration.support import REGISTRY_HOST, drain

from app.builds.podman import Podman

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
HEAVY_APT = "gcc\ng++\nmake\nlibc6-dev\n"


def second_host() -> str:
    subprocess.run(["bash", str(REPO / "scripts/podman-rootless.sh"), "--second-host"], check=True,
                   capture_output=True, timeout=300)
    out = subprocess.run(["bash", str(REPO / "scripts/env.sh")], check=True, capture_output=True, text=True).stdout
    return next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("export SECOND_PODMAN_URL="))


def pushed_base(stack, name: str) -> str:
    ref = f"{REGISTRY_HOST}/it-{stack.sid}/{name}:1"
    podman = stack.podman()
    try:
        podman.tag_image(unique_base(stack, name), ref.rsplit(":", 1)[0], "1")
        drain(podman.push(ref, stack.registry_auth(), tls_verify=False))
    finally:
        podman.close()
    return ref


def pull_on(stack, url: str, ref: str) -> None:
    podman = Podman(url)
    try:
        drain(podman.pull(ref, stack.registry_auth(), tls_verify=False))
    finally:
        podman.close()


def on_host(stack, url: str, name: str, mode: str):
    stack.stop_worker(stack.worker)
    stack.worker = stack.spawn_worker(stack.workdir / f"worker-{name}-{mode}.log", PODMAN_URL=url,
                                      BUILD_HOST_NAME=name, BUILD_CACHE=mode)
    # Let the worker's first maintenance pass end before a job arrives: a work horse forked
    # while that thread is inside SQLite can wait on SQLite's lock forever.
    time.sleep(5)


def main():
    host_b = second_host()
    stack = started_stack()
    host_a = stack.settings["PODMAN_URL"]
    secret = stack.registry_credential(f"bench-{stack.sid}")
    try:
        shared_ratios, local_ratios, overheads = [], [], []
        for run in range(RUNS):
            cold = {}
            modes = ("registry", "local") if run % 2 == 0 else ("local", "registry")
            for mode in modes:
                name = f"shared-{run}-{mode}"
                on_host(stack, host_a, "host-a", mode)
                base = pushed_base(stack, name)
                cold[mode] = succeeded(stack, save_spec(stack, name=name, base_image=base, pull_secret=secret,
                                                        apt=HEAVY_APT, pip="six"))
                pull_on(stack, host_b, base)
            warm = {}
            for mode in modes:
                on_host(stack, host_b, "host-b", mode)
                warm[mode] = succeeded(stack, change_spec(stack, f"shared-{run}-{mode}", pip="six\nidna\n"))
            assert "APT layer: from the shared cache, built on host-a" in stack.log_text(warm["registry"].id)
            assert "from the shared cache" not in stack.log_text(warm["local"].id)
            shared_ratios.append(job_seconds(warm["registry"]) / job_seconds(cold["registry"]))
            local_ratios.append(job_seconds(warm["local"]) / job_seconds(cold["local"]))
            overheads.append(job_seconds(cold["registry"]) / job_seconds(cold["local"]) - 1)
            print(f"run {run + 1}/{RUNS}: cold on A {job_seconds(cold['registry']):.1f}s pushing the cache, "
                  f"{job_seconds(cold['local']):.1f}s without; pip-only change on B "
                  f"{job_seconds(warm['registry']):.1f}s with the shared cache ({shared_ratios[-1]:.2f} of cold), "
                  f"{job_seconds(warm['local']):.1f}s without ({local_ratios[-1]:.2f})", flush=True)
        print(f"pip-only change on the other host, median over {RUNS} runs: with the shared cache "
              f"{statistics.median(shared_ratios):.2f} of the cold build (target <= 0.25, goal 0.10), without "
              f"{statistics.median(local_ratios):.2f}; pushing the cache on a cold build "
              f"{statistics.median(overheads):+.0%} (target <= 10%)")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
