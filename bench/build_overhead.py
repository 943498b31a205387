"""Overhead of the app over the bare CLI: the same Containerfile built, verified and pushed by
the app (from saving the spec to `succeeded`) and by `podman build` + one `podman run` of the
verify step's own manifest commands + `podman push` as the build user, with the same cache
state (each run on a fresh base image, so every step after FROM runs), alternating which goes
first. Target: median ratio at most 1.10 (goal 1.05). It also prints the app's verify step
alone (the "Verified in N s" line of each job's log).

    .venv/bin/python bench/build_overhead.py        (BENCH_RUNS=5 by default)
"""
import base64
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _stack import job_seconds, save_spec, started_stack, statistics, succeeded, unique_base

from app.builds.verify import manifest_command
from app.specs.containerfile import CA_BUNDLE_CONTEXT_NAME

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
APT, PIP = "jq", "six"
_VERIFIED_RE = re.compile(r"^Verified in ([0-9.]+) s\.$", re.MULTILINE)


def as_build_user(args, cwd="/"):
    user = pwd.getpwnam(os.environ.get("BUILD_USER", "imagebuilder"))
    command = [
        "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
        "env", "-i", f"HOME={user.pw_dir}", f"USER={user.pw_name}", "PATH=/usr/local/bin:/usr/bin:/bin",
        f"XDG_RUNTIME_DIR=/run/user/{user.pw_uid}", *args,
    ]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def cli_build_and_push(stack, containerfile: str, ref: str) -> float:
    """podman build + podman run of the manifest commands + podman push of `containerfile`
    (with the CA bundle), seconds."""
    user = pwd.getpwnam(os.environ.get("BUILD_USER", "imagebuilder"))
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    try:
        (work / "Containerfile").write_text(containerfile)
        if stack.settings["BUILD_CA_BUNDLE"]:
            shutil.copy(stack.settings["BUILD_CA_BUNDLE"], work / CA_BUNDLE_CONTEXT_NAME)
        basic = f"{stack.settings['REGISTRY_USERNAME']}:{stack.settings['REGISTRY_PASSWORD']}"
        (work / "auth.json").write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": base64.b64encode(basic.encode()).decode()}}}))
        for path in [work, *work.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
        work.chmod(0o700)
        started = time.monotonic()
        as_build_user(["podman", "build", "--layers", "-t", ref, "-f", str(work / "Containerfile"), str(work)])
        nonce = "0" * 16
        listing = as_build_user(["podman", "run", "--rm", "--entrypoint", "/bin/sh", ref, "-c", manifest_command(nonce)])
        if f"@@imagebuilder-{nonce} end" not in listing:
            raise RuntimeError(f"podman run of the manifest commands ended early:\n{listing[-2000:]}")
        as_build_user(["podman", "push", "--tls-verify=false", "--authfile", str(work / "auth.json"), ref])
        return time.monotonic() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)


def app_build(stack, name: str, base: str):
    return succeeded(stack, save_spec(stack, name=name, base_image=base, apt=APT, pip=PIP))


def verify_seconds(stack, job) -> float:
    found = _VERIFIED_RE.findall(stack.log_text(job.id))
    if not found:
        raise RuntimeError(f"job {job.id} has no 'Verified in' line")
    return float(found[-1])


def main():
    stack = started_stack()
    try:
        # One warm-up pair: the APT index and PyPI answers are then equally warm for both.
        warm = app_build(stack, "ovh-warm", unique_base(stack, "ovh-warm"))
        template = warm.spec_snapshot["containerfile_built"]
        cli_build_and_push(stack, template.replace(f"FROM {warm.spec_snapshot['base_image']}", f"FROM {unique_base(stack, 'ovh-warm-cli')}"),
                           f"{stack.registry}/ovh-cli-warm:1")
        ratios, app_times, cli_times, verify_times = [], [], [], []
        for run in range(RUNS):
            app_base, cli_base = unique_base(stack, f"ovh-app-{run}"), unique_base(stack, f"ovh-cli-{run}")
            containerfile = template.replace(f"FROM {warm.spec_snapshot['base_image']}", f"FROM {cli_base}")
            order = ("app", "cli") if run % 2 == 0 else ("cli", "app")
            times = {}
            for side in order:
                if side == "app":
                    job = app_build(stack, f"ovh-{run}", app_base)
                    times["app"] = job_seconds(job)
                    verify_times.append(verify_seconds(stack, job))
                else:
                    times["cli"] = cli_build_and_push(stack, containerfile, f"{stack.registry}/ovh-cli-{run}:1")
            ratios.append(times["app"] / times["cli"])
            app_times.append(times["app"])
            cli_times.append(times["cli"])
            print(f"run {run + 1}/{RUNS} ({order[0]} first): app {times['app']:.2f}s (verify "
                  f"{verify_times[-1]:.1f}s)  cli {times['cli']:.2f}s  ratio {ratios[-1]:.3f}", flush=True)
        median = statistics.median(ratios)
        print(f"build overhead: app median {statistics.median(app_times):.2f}s, podman CLI median "
              f"{statistics.median(cli_times):.2f}s, median ratio {median:.3f} (target <= 1.10, goal 1.05) "
              f"over {RUNS} runs; the app's verify step median {statistics.median(verify_times):.2f}s "
              f"(min {min(verify_times):.2f}s, max {max(verify_times):.2f}s)")
        return 0 if median <= 1.10 else 1
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
