"""Everything that talks to Podman: pull, inspect, a pre-flight check, build, push, stop,
and throwaway containers of a built image (the verify step's manifest and test command).

The worker talks to a rootless Podman API service through podman-py's low-level client.
Pull, build and push are read as streams of JSON lines (``{"stream": ...}`` or
``{"error": ...}``; the HTTP status is 200 even when they fail), on a thread of their own,
so the caller keeps time while Podman is quiet: it flushes the log, notices a cancel
request and enforces the build timeout.

Credentials reach Podman only through its auth headers (``X-Registry-Auth`` for pull and
push, ``X-Registry-Config`` for the build's own base-image pull); Podman writes them to a
temporary auth file for that one request.
"""
from __future__ import annotations

import base64
import codecs
import io
import json
import logging
import os
import queue
import re
import signal
import tarfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone

from podman import PodmanClient
from podman.errors import APIError

from ..i18n import stored as said

log = logging.getLogger(__name__)

CONTAINERFILE_NAME = "Containerfile"
CONDA_CHECK = "command -v micromamba || command -v mamba || command -v conda"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LIST_ATTEMPTS = 5

END = object()  # what EventStream.get returns once the stream is over
_LAYER_RE = re.compile(r"^--> ([0-9a-f]{11,64})$", re.MULTILINE)


class PodmanFailure(Exception):
    """Podman refused or could not do something; the message is for the build log."""


class PodmanUnavailable(PodmanFailure):
    """The Podman service does not answer."""


@dataclass(frozen=True)
class RegistryAuth:
    """A username and password for one registry host."""

    host: str
    username: str
    password: str

    def auth_header(self) -> str:
        """``X-Registry-Auth``: one auth config, base64url JSON."""
        return _b64json({"username": self.username, "password": self.password})

    def config_header(self) -> str:
        """``X-Registry-Config``: auth configs keyed by registry host, base64url JSON."""
        return _b64json({self.host: {"username": self.username, "password": self.password}})

    def secret_forms(self) -> list[str]:
        """Every form in which this credential could turn up in text, for redaction."""
        basic = f"{self.username}:{self.password}".encode()
        forms = [
            self.password,
            urllib.parse.quote(self.password, safe=""),
            self.auth_header(),
            self.config_header(),
            base64.b64encode(basic).decode(),
            base64.b64encode(json.dumps({"username": self.username, "password": self.password}).encode()).decode(),
        ]
        return [f for f in forms if f]


def registry_config_header(auths) -> str:
    """``X-Registry-Config`` for several registries at once (the base's and the shared
    cache's): auth configs keyed by registry host, base64url JSON."""
    return _b64json({auth.host: {"username": auth.username, "password": auth.password} for auth in auths})


def _b64json(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode("utf-8")).decode("ascii")


class EventStream:
    """The JSON lines of one streaming Podman call, read on a thread of their own."""

    def __init__(self, response, what: str):
        self._response = response
        self._what = what
        self._queue: queue.Queue = queue.Queue(maxsize=10000)
        # A build commits each step as an image ("--> 84c6c1e3934") and runs the next
        # step in a new working container made from it: the last one names the current.
        self.last_layer: str | None = None
        # True when the connection broke rather than ended: what Podman still does is unknown.
        self.broken = False
        self._thread = threading.Thread(target=self._read, name=f"podman-{what}", daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for raw in self._response.iter_lines():
                if not raw:
                    continue
                try:
                    event = json.loads(raw)
                except ValueError:
                    event = {"stream": raw.decode("utf-8", "replace") + "\n"}
                layers = _LAYER_RE.findall(event.get("stream") or "")
                if layers:
                    self.last_layer = layers[-1]
                self._queue.put(event)
        except Exception as exc:  # the connection broke: Podman went away, or we closed it
            self.broken = True
            self._queue.put({"error": f"lost the connection to Podman during {self._what}: {exc}", "broken": True})
        finally:
            self._queue.put(END)

    def get(self, timeout: float):
        """The next event (a dict; a ContainerRun's are text), END when the stream is over,
        or None after `timeout`."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        try:
            self._response.close()
        except Exception:  # closing a broken connection may fail too; nothing to keep
            pass

    def wait_closed(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


class ContainerRun(EventStream):
    """A throwaway container running ``/bin/sh -c command`` in an image, started already:
    its output (stdout, and stderr when asked) read as it is printed on a thread of its
    own, its exit code, and its removal. `get` hands out text; past `max_bytes` of
    output the reader stops keeping it and sets `overflowed`."""

    def __init__(self, podman: "Podman", container: str, response, max_bytes: int | None):
        self._podman = podman
        self.container = container
        self._max_bytes = max_bytes
        self.overflowed = False
        super().__init__(response, f"container {container[:12]}")

    def _read(self):
        frames = _FrameReader()
        seen = 0
        try:
            for data in self._response.iter_content(chunk_size=65536):
                text = frames.feed(data)
                seen += len(data)
                if self._max_bytes is not None and seen > self._max_bytes:
                    self.overflowed = True
                    break
                if text:
                    self._queue.put(text)
            else:
                text = frames.finish()
                if text:
                    self._queue.put(text)
        except Exception as exc:  # the connection broke, or we closed it to stop
            log.info("container %s: output stream ended: %s", self.container[:12], exc)
        finally:
            self._queue.put(END)

    def exit_code(self, timeout: float = 30) -> int:
        response = self._podman._call("post", f"/containers/{self.container}/wait",
                                      params={"condition": "stopped"}, timeout=timeout)
        _raise_for(response, said.PODMAN_WAITING_THROWAWAY)
        try:
            return int(response.text.strip())
        except ValueError:
            raise PodmanFailure(said.PODMAN_EXIT_CODE % {"answer": repr(response.text[:100])}) from None

    def remove(self) -> None:
        """Kill and remove the container, whatever its state; never raises."""
        self.close()
        try:
            self._podman.remove_container(self.container)
        except PodmanFailure as exc:
            log.warning("could not remove container %s: %s", self.container[:12], exc)


class _FrameReader:
    """Container output as text, read piece by piece: multiplexed frames (an 8-byte
    header each) or plain bytes, decided by the first bytes; UTF-8 split across pieces
    decodes whole, bad bytes as U+FFFD."""

    def __init__(self):
        self._buffer = b""
        self._framed: bool | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> str:
        self._buffer += data
        if self._framed is None:
            if len(self._buffer) < 8:
                return ""
            self._framed = self._buffer[0] in (0, 1, 2) and self._buffer[1:4] == b"\0\0\0"
        if not self._framed:
            data, self._buffer = self._buffer, b""
            return self._decoder.decode(data)
        out = []
        while len(self._buffer) >= 8:
            size = int.from_bytes(self._buffer[4:8], "big")
            if len(self._buffer) < 8 + size:
                break
            out.append(self._buffer[8:8 + size])
            self._buffer = self._buffer[8 + size:]
        return self._decoder.decode(b"".join(out))

    def finish(self) -> str:
        rest = b"" if self._framed else self._buffer
        self._buffer = b""
        return self._decoder.decode(rest, final=True)


@dataclass
class BuildHandle:
    """What it takes to find a running build again in order to stop it."""

    base_image_id: str
    started_at: float
    containers_before: set[str] = field(default_factory=set)


def build_context(containerfile: str, extra_files: dict[str, bytes] | None = None) -> bytes:
    """An uncompressed tar holding the Containerfile (and e.g. the CA bundle)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        files = {CONTAINERFILE_NAME: containerfile.encode("utf-8"), **(extra_files or {})}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0  # the same inputs give the same context, so COPY layers cache
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pulled_digest(info: dict, reference: str, registry_digest: str | None = None) -> str | None:
    """The registry's manifest digest of the image pulled as `reference` (``host/repo:tag``),
    from its inspect data. Podman lists every digest the image is known by under each of
    its names (RepoDigests), and ``Digest`` may be another copy's (built here, or pulled
    under another name), so the digest the registry reports for the tag right after the
    pull (`registry_digest`) wins when the image has it."""
    repository = reference.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    known = [entry.partition("@")[2] for entry in info.get("RepoDigests") or [] if entry.partition("@")[0] == repository]
    if registry_digest and (registry_digest in known or registry_digest == info.get("Digest")):
        return registry_digest
    if len(known) == 1:
        return known[0]
    return info.get("Digest") or None


def _quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


class Podman:
    """One connection to the Podman API service at `url` (``unix:///run/user/<uid>/...``)."""

    def __init__(self, url: str, timeout: float = 60):
        self.url = url
        self._timeout = timeout
        self.client = PodmanClient(base_url=url, timeout=timeout)

    def close(self):
        self.client.close()

    # -- plain calls ------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs):
        try:
            return getattr(self.client.api, method)(path, **kwargs)
        except APIError as exc:
            raise PodmanUnavailable(said.PODMAN_NO_ANSWER % {"url": self.url, "cause": _cause(exc)}) from exc

    def ping(self) -> None:
        response = self._call("get", "/_ping")
        if response.status_code != 200:
            raise PodmanUnavailable(said.PODMAN_PING_STATUS % {"url": self.url, "status": response.status_code})

    def version(self) -> str:
        return self._call("get", "/version").json().get("Version", "?")

    def inspect_image(self, ref: str) -> dict | None:
        response = self._call("get", f"/images/{_quote(ref)}/json")
        if response.status_code == 404:
            return None
        _raise_for(response, said.PODMAN_INSPECTING % {"image": ref})
        return response.json()

    def tag_image(self, ref: str, repo: str, tag: str) -> None:
        response = self._call("post", f"/images/{_quote(ref)}/tag", params={"repo": repo, "tag": tag})
        _raise_for(response, said.PODMAN_TAGGING % {"image": ref, "repository": repo, "tag": tag})

    def remove_image(self, ref: str) -> None:
        response = self._call("delete", f"/images/{_quote(ref)}", params={"force": False})
        if response.status_code not in (200, 404, 409):
            _raise_for(response, said.PODMAN_REMOVING % {"image": ref})

    def remove_container(self, container: str) -> None:
        """Remove a container, a build's working container included, whatever its state."""
        self._call("delete", f"/containers/{container}", params={"force": True})

    def find_conda_tool(self, image: str) -> str | None:
        """Path of micromamba, mamba or conda in `image`, found by running a short container
        with the image's own PATH and user; None when it has none."""
        exit_code, output = self.run_shell(image, CONDA_CHECK)
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        return lines[0] if exit_code == 0 and lines else None

    def run_shell(self, image: str, command: str, timeout: float = 120) -> tuple[int, str]:
        """Run ``/bin/sh -c command`` in a throwaway container of `image`: (exit code, stdout)."""
        container = self._start_shell(image, command, "check")
        try:
            response = self._call("post", f"/containers/{container}/wait", params={"condition": "stopped"},
                                  timeout=timeout)
            _raise_for(response, said.PODMAN_WAITING % {"image": image})
            exit_code = int(response.text.strip() or "1")
            return exit_code, self._container_output(container)
        finally:
            self._remove_throwaway(container)

    def run_in_image(self, image: str, command: str, *, stderr: bool = True,
                     max_bytes: int | None = None) -> ContainerRun:
        """Start ``/bin/sh -c command`` in a throwaway container of `image`, as the image's
        own user, with the image's own environment and nothing else (no mounts, no
        credentials); its output streams. The caller removes it (ContainerRun.remove)."""
        container = self._start_shell(image, command, "verify")
        try:
            output = self._call("get", f"/containers/{container}/logs", stream=True, timeout=(30, None),
                                params={"follow": True, "stdout": True, "stderr": stderr})
            _raise_for(output, said.PODMAN_READING % {"image": image})
        except BaseException:
            self._remove_throwaway(container)
            raise
        return ContainerRun(self, container, output, max_bytes)

    def _start_shell(self, image: str, command: str, purpose: str) -> str:
        """Create and start a container of `image` running ``/bin/sh -c command``; its id.
        One that does not start is removed again."""
        spec = {
            "image": image,
            "entrypoint": ["/bin/sh", "-c"],
            "command": [command],
            "labels": {"imagebuilder.purpose": purpose},
        }
        response = self._call("post", "/containers/create", data=json.dumps(spec),
                              headers={"Content-Type": "application/json"})
        _raise_for(response, said.PODMAN_CREATING % {"image": image})
        container = response.json()["Id"]
        try:
            response = self._call("post", f"/containers/{container}/start")
            _raise_for(response, said.PODMAN_STARTING % {"image": image})
        except BaseException:
            self._remove_throwaway(container)
            raise
        return container

    def _remove_throwaway(self, container: str) -> None:
        self._call("delete", f"/containers/{container}", params={"force": True, "v": True})

    def _container_output(self, container: str) -> str:
        response = self._call("get", f"/containers/{container}/logs", params={"stdout": True, "stderr": False})
        _raise_for(response, said.PODMAN_READING_ANY)
        return _demux(response.content)

    # -- streams ----------------------------------------------------------------------

    def _stream(self, path: str, what: str, **kwargs) -> EventStream:
        response = self._call("post", path, stream=True, timeout=(30, None), **kwargs)
        if response.status_code >= 400:
            _raise_for(response, what)
        return EventStream(response, what)

    def pull(self, ref: str, auth: RegistryAuth | None, tls_verify: bool | None) -> EventStream:
        """Pull `ref` always (a moved tag is picked up, a cached private image needs its
        credential again). tls_verify None leaves it to the service's registries.conf."""
        params = {"reference": ref, "policy": "always", "quiet": False}
        if tls_verify is not None:
            params["tlsVerify"] = tls_verify
        headers = {"X-Registry-Auth": auth.auth_header()} if auth else {}
        return self._stream("/images/pull", "the pull", params=params, headers=headers)

    def build(self, context: bytes, tag: str, auth: RegistryAuth | list[RegistryAuth] | None = None,
              extra_params: dict | None = None) -> EventStream:
        """Build `context`; `auth` is the credential of each registry the build talks to
        (the base's, the shared cache's); `extra_params` (the shared cache's,
        app/builds/cache.py) go with the request and win over these."""
        params = {
            "dockerfile": CONTAINERFILE_NAME,
            "t": tag,
            "layers": True,  # keep intermediate layers: a pip-only change reuses the APT layer
            "rm": True,
            "forcerm": True,  # no build container left behind, even after a failure
            # Without an explicit format, Podman 4.3's libpod endpoint never finds its own
            # cached layers (the compat endpoint and the CLI do): every build starts cold.
            "outputformat": OCI_MANIFEST,
            **(extra_params or {}),
        }
        headers = {"Content-Type": "application/x-tar"}
        auths = [auth] if isinstance(auth, RegistryAuth) else list(auth or ())
        if auths:
            headers["X-Registry-Config"] = registry_config_header(auths)
        return self._stream("/build", "the build", params=params, data=context, headers=headers)

    def push(self, ref: str, auth: RegistryAuth | None, tls_verify: bool | None) -> EventStream:
        params = {"quiet": False}
        if tls_verify is not None:
            params["tlsVerify"] = tls_verify
        headers = {"X-Registry-Auth": auth.auth_header()} if auth else {}
        return self._stream(f"/images/{_quote(ref)}/push", "the push", params=params, headers=headers)

    # -- stopping a build -------------------------------------------------------------

    def build_containers(self) -> list[dict]:
        """Buildah's working containers (Podman calls them external, state "storage")."""
        for attempt in range(1, LIST_ATTEMPTS + 1):
            response = self._call("get", "/containers/json", params={"all": True, "external": True})
            # Podman 4.3 fails the whole list when another build removes a container while
            # it is listing ("container not known"): with builds side by side, ask again.
            if response.status_code < 400 or "not known" not in response.text or attempt == LIST_ATTEMPTS:
                break
            time.sleep(0.1 * attempt)
        _raise_for(response, said.PODMAN_LISTING_BUILDS)
        return [c for c in response.json() if c.get("State") == "storage"]

    def start_handle(self, base_image_id: str) -> BuildHandle:
        return BuildHandle(
            base_image_id=base_image_id,
            started_at=time.time(),
            containers_before={c["Id"] for c in self.build_containers()},
        )

    def find_build_container(self, handle: BuildHandle, image_id: str) -> str | None:
        """The working container of the build `handle` started, now running a step on
        `image_id` (the base, or the image the previous step committed): new since the
        build started, and the earliest such should builds on the same image overlap."""
        candidates = []
        for c in self.build_containers():
            if c["Id"] in handle.containers_before or not (c.get("ImageID") or "").startswith(image_id):
                continue
            created = parse_time(c.get("Created"))
            if created is not None and created < handle.started_at - 2:
                continue
            candidates.append((created or 0, c["Id"]))
        return min(candidates)[1] if candidates else None

    def stop_build(self, handle: BuildHandle, stream: EventStream, grace: float = 20) -> None:
        """Stop a running build and leave no build container behind.

        Closing the API connection does not stop a build in Podman 4.3, nor does removing
        its working container: the current RUN step carries on to its end. So the step's
        OCI container (runc names it buildah-buildah<n>; its hostname is the first twelve
        characters of the working container's id) is killed, which fails the build, and
        buildah then removes its container itself (forcerm)."""
        # Until the build's stream ends: a step may be starting just now, in a container
        # made from the image the previous step committed, so look again each second.
        containers = set()
        deadline = time.monotonic() + grace
        while True:
            try:
                container = self.find_build_container(handle, stream.last_layer or handle.base_image_id)
            except PodmanFailure as exc:
                log.warning("could not list build containers: %s", exc)
                container = None
            if container:
                killed = kill_run_steps(self.url, container)
                if container not in containers or killed:
                    log.info("stopping build container %s: killed %d RUN step process(es)", container[:12], killed)
                containers.add(container)
            if stream.wait_closed(1):
                break
            if time.monotonic() > deadline:
                stream.close()
                stream.wait_closed(5)
                break
        for container in containers:
            try:
                self.remove_container(container)
            except PodmanFailure as exc:
                log.warning("could not remove build container %s: %s", container[:12], exc)


def kill_run_steps(podman_url: str, container_id: str) -> int:
    """SIGKILL the RUN step containers of one buildah working container.

    Works when the worker shares the build host with the Podman service and may signal
    its processes (here the worker runs as root). Returns how many it killed."""
    runc_root = _runc_root(podman_url)
    if not runc_root or not os.path.isdir(runc_root):
        return 0
    killed = 0
    for name in os.listdir(runc_root):
        try:
            with open(os.path.join(runc_root, name, "state.json")) as fh:
                state = json.load(fh)
        except (OSError, ValueError):
            continue
        if state.get("config", {}).get("hostname") != container_id[:12]:
            continue
        pid = state.get("init_process_pid")
        # A state folder can outlive its process, and the pid be reused: only the process
        # that started when runc says it did is the step's.
        if pid and _process_start(pid) == state.get("init_process_start"):
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
    return killed


def _process_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _runc_root(podman_url: str) -> str | None:
    """runc's state folder for the (rootless) user who owns the service socket."""
    parsed = urllib.parse.urlparse(podman_url)
    if parsed.scheme not in ("unix", "http+unix"):
        return None
    socket_path = parsed.path or parsed.netloc
    try:
        uid = os.stat(socket_path).st_uid
    except OSError:
        return None
    return "/run/runc" if uid == 0 else f"/run/user/{uid}/runc"


def parse_time(value) -> float | None:
    if not value:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value)
    # Go timestamps carry nanoseconds; Python parses microseconds at most.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    text = text.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc).timestamp()
    except ValueError:
        return None


def _demux(data: bytes) -> str:
    """Container logs come multiplexed (8-byte frame headers) or plain."""
    out = bytearray()
    pos = 0
    while pos + 8 <= len(data) and data[pos] in (0, 1, 2) and data[pos + 1:pos + 4] == b"\0\0\0":
        size = int.from_bytes(data[pos + 4:pos + 8], "big")
        out += data[pos + 8:pos + 8 + size]
        pos += 8 + size
    if pos == 0:
        return data.decode("utf-8", "replace")
    return out.decode("utf-8", "replace")


def _cause(exc: Exception) -> str:
    cause = exc.__cause__ or exc
    return str(cause).splitlines()[0] if str(cause) else type(cause).__name__


def _raise_for(response, what: str) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
        message = body.get("message") or body.get("cause") or response.text
    except ValueError:
        message = response.text
    raise PodmanFailure(said.PODMAN_FAILED % {"action": what, "message": message.strip()})
