"""Activate (the rollback) through the API against the real registry: the time from the
request to the answer, the registry's re-tag of `latest` and its digest check included.
Target: every answer within 2 s.

    .venv/bin/python bench/activate.py         (BENCH_RUNS=20 by default)
"""
import os
import sys
import time

from _stack import change_spec, percentile, save_spec, started_stack, statistics, succeeded

from app.auth.service import create_or_update_user, issue_token
from integration.support import ADMIN_PASSWORD, ADMIN_USERNAME, BASE

RUNS = int(os.environ.get("BENCH_RUNS", "20"))


def main():
    stack = started_stack()
    try:
        first = succeeded(stack, save_spec(stack, name="bench-activate", base_image=BASE, pip="six"))
        second = succeeded(stack, change_spec(stack, "bench-activate", pip="idna"))
        stack.wait_for_active("bench-activate", second.revision)
        with stack.app.app_context():
            token = issue_token(create_or_update_user(ADMIN_USERNAME, ADMIN_PASSWORD))
        client = stack.app.test_client()
        registry = stack.registry_client()
        seconds = []
        for run in range(RUNS):
            job = (first, second)[run % 2]
            started = time.perf_counter()
            response = client.post("/api/v1/specs/bench-activate/activate", json={"revision": job.revision},
                                   headers={"Authorization": f"Bearer {token}"})
            seconds.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"activate r{job.revision}: {response.status_code} {response.get_json()}")
            if registry.manifest(f"it-{stack.sid}/bench-activate", "latest").digest != job.digest:
                raise RuntimeError(f"latest is not r{job.revision}'s digest after activating it")
        print(f"activate (API, registry re-tag and digest check): median {statistics.median(seconds) * 1000:.0f} ms, "
              f"p95 {percentile(seconds, 95) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms over {RUNS} runs "
              "(target: every answer <= 2 s)")
        return max(seconds) <= 2
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
