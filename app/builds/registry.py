"""Asking the registry itself (HTTP API v2) what a push left there.

Podman's push does not reliably report a failed push, so a build succeeds only when the
registry answers for the tag with a manifest digest. Basic auth is sent up front; a
registry that wants a bearer token says so in its 401 and gets one from its realm.
Re-tagging (``retag``) copies a manifest to another tag inside the registry: no layer
moves, nothing is pulled or built.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import requests

from ..i18n import stored as said

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        *INDEX_TYPES,
    ]
)


class RegistryError(Exception):
    """The registry could not be asked, or refused; the message is for the build log."""


@dataclass(frozen=True)
class ImageRef:
    """``host[:port]/path/name:tag`` split into what the registry API needs."""

    host: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, ref: str) -> "ImageRef":
        host, _, rest = ref.partition("/")
        repository, _, tag = rest.rpartition(":")
        if not host or not repository or not tag or "/" in tag:
            raise ValueError(f"not a host/repository:tag reference: {ref!r}")
        return cls(host, repository, tag)

    def __str__(self):
        return f"{self.host}/{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None


@dataclass(frozen=True)
class ResolvedDigest:
    """What a tag points at now: its manifest digest and, for a multi-arch index, the
    digest of the image for the platform asked for (None when the index has none)."""

    digest: str
    platform_digest: str | None = None

    @property
    def digests(self) -> set[str]:
        return {d for d in (self.digest, self.platform_digest) if d}


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    size_bytes: int  # config + layers, compressed: what a pull downloads


class RegistryClient:
    def __init__(self, host: str, username: str | None = None, password: str | None = None,
                 tls_verify: bool = True, timeout: float = 30):
        self.host = host
        self._auth = (username, password) if username else None
        self._tls_verify = tls_verify
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False  # a local or intranet registry is not behind the proxy
        self._base = None
        self.requests_sent = 0  # every HTTP request to the registry (benchmarks count them)
        self._count_lock = threading.Lock()

    def _count_request(self) -> None:
        with self._count_lock:
            self.requests_sent += 1

    def _base_url(self) -> str:
        """https, or plain http for a registry the operator marked as not verified."""
        if self._base:
            return self._base
        try:
            self._count_request()
            self._session.get(f"https://{self.host}/v2/", timeout=self._timeout, verify=self._tls_verify)
            self._base = f"https://{self.host}"
        except requests.exceptions.SSLError:
            if self._tls_verify:
                raise
            self._base = f"http://{self.host}"
        except requests.ConnectionError:
            if self._tls_verify:
                raise
            self._base = f"http://{self.host}"
        return self._base

    def _get(self, path: str, headers: dict | None = None) -> requests.Response:
        return self._request("GET", path, headers)

    def _request(self, method: str, path: str, headers: dict | None = None,
                 data: bytes | None = None) -> requests.Response:
        try:
            url = self._base_url() + path
            self._count_request()
            response = self._session.request(method, url, headers=headers, data=data, auth=self._auth,
                                             timeout=self._timeout, verify=self._tls_verify)
            if response.status_code == 401 and "bearer" in response.headers.get("WWW-Authenticate", "").lower():
                token = self._bearer_token(response.headers["WWW-Authenticate"])
                self._count_request()
                response = self._session.request(method, url,
                                                 headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                                                 data=data, timeout=self._timeout, verify=self._tls_verify)
        except requests.RequestException as exc:
            raise RegistryError(said.REGISTRY_UNREACHABLE % {"host": self.host, "exception": type(exc).__name__}) from None
        if response.status_code in (401, 403):
            raise RegistryError(said.REGISTRY_REFUSED_CREDENTIALS % {"host": self.host, "status": response.status_code})
        return response

    def _bearer_token(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise RegistryError(said.REGISTRY_NO_TOKEN_REALM % {"host": self.host})
        self._count_request()
        response = self._session.get(realm, params=params, auth=self._auth, timeout=self._timeout,
                                     verify=self._tls_verify)
        if response.status_code != 200:
            raise RegistryError(said.REGISTRY_TOKEN_REFUSED % {"host": self.host, "status": response.status_code})
        body = response.json()
        return body.get("token") or body.get("access_token")

    def manifest(self, repository: str, tag: str) -> Manifest | None:
        """The manifest the registry serves for `repository:tag`, None when it has none."""
        response = self._get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(said.REGISTRY_HTTP % {"host": self.host, "status": response.status_code,
                                                     "repository": repository, "tag": tag})
        digest = response.headers.get("Docker-Content-Digest")
        body = response.json()
        if not digest:
            raise RegistryError(said.REGISTRY_NO_DIGEST % {"host": self.host, "repository": repository, "tag": tag})
        size = int(body.get("config", {}).get("size", 0)) + sum(int(layer.get("size", 0)) for layer in body.get("layers", []))
        return Manifest(digest=digest, media_type=body.get("mediaType") or response.headers.get("Content-Type", ""),
                        size_bytes=size)

    def retag(self, repository: str, source_tag: str, tag: str, expect_digest: str | None = None) -> Manifest:
        """Point `repository:tag` at the manifest `source_tag` has: the manifest's exact
        bytes are PUT under the new tag with their own media type, then the registry is
        asked again and must answer with the same digest. Raises RegistryError, also when
        `source_tag` is gone or (before anything moves) is not `expect_digest`."""
        response = self._get(f"/v2/{repository}/manifests/{source_tag}", headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            raise RegistryError(f"registry {self.host} no longer has {repository}:{source_tag}")
        if response.status_code != 200:
            raise RegistryError(f"registry {self.host} answered HTTP {response.status_code} for {repository}:{source_tag}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        source_digest = response.headers.get("Docker-Content-Digest")
        if not media_type or not source_digest:
            raise RegistryError(f"registry {self.host} sent no media type or digest for {repository}:{source_tag}")
        if expect_digest and source_digest != expect_digest:
            raise RegistryError(f"registry {self.host}'s {repository}:{source_tag} is {source_digest}, "
                                f"not {expect_digest}")
        put = self._request("PUT", f"/v2/{repository}/manifests/{tag}", headers={"Content-Type": media_type},
                            data=response.content)
        if put.status_code not in (200, 201):
            raise RegistryError(f"registry {self.host} answered HTTP {put.status_code} tagging {repository}:{tag}")
        moved = self.manifest(repository, tag)
        if moved is None or moved.digest != source_digest:
            raise RegistryError(f"registry {self.host}'s {repository}:{tag} is not {source_digest} after tagging it")
        return moved

    def resolve(self, repository: str, tag: str, platform: Platform) -> ResolvedDigest | None:
        """The digest `repository:tag` points at, asked with a HEAD request (nothing is
        pulled); None when the registry has no such tag. A multi-arch index is read (its
        small JSON list, no image) for the entry of `platform`."""
        response = self._request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(said.REGISTRY_HTTP % {"host": self.host, "status": response.status_code,
                                                     "repository": repository, "tag": tag})
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            raise RegistryError(said.REGISTRY_NO_DIGEST % {"host": self.host, "repository": repository, "tag": tag})
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in INDEX_TYPES:
            return ResolvedDigest(digest)
        index = self._get(f"/v2/{repository}/manifests/{digest}", headers={"Accept": MANIFEST_TYPES})
        if index.status_code != 200:
            raise RegistryError(said.REGISTRY_HTTP_INDEX % {"host": self.host, "status": index.status_code,
                                                            "repository": repository, "tag": tag})
        return ResolvedDigest(digest, platform_manifest(index.json(), platform))

    def tags(self, repository: str) -> list[str]:
        response = self._get(f"/v2/{repository}/tags/list")
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise RegistryError(f"registry {self.host} answered HTTP {response.status_code} listing {repository}")
        return response.json().get("tags") or []

    def delete_tag(self, repository: str, tag: str) -> bool:
        """Delete the manifest `repository:tag` points at; every tag on that digest goes
        with it. False when the registry had no such tag (already gone is fine)."""
        manifest = self.manifest(repository, tag)
        if manifest is None:
            return False
        response = self._request("DELETE", f"/v2/{repository}/manifests/{manifest.digest}")
        if response.status_code == 404:
            return False
        if response.status_code == 405:
            raise RegistryError(f"registry {self.host} does not allow deleting images (its storage.delete is off)")
        if response.status_code not in (200, 202):
            raise RegistryError(f"registry {self.host} answered HTTP {response.status_code} deleting {repository}:{tag}")
        return True


def platform_manifest(index: dict, platform: Platform) -> str | None:
    """The digest of `platform`'s image in a multi-arch index (OCI index or Docker
    manifest list); a variant is matched only when both name one."""
    for entry in index.get("manifests") or []:
        wanted = entry.get("platform") or {}
        if wanted.get("os") != platform.os or wanted.get("architecture") != platform.architecture:
            continue
        if platform.variant and wanted.get("variant") and wanted["variant"] != platform.variant:
            continue
        return entry.get("digest")
    return None
