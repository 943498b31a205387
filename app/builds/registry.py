"""Asking the registry itself (HTTP API v2) what a push left there.

Podman's push does not reliably report a failed push, so a build succeeds only when the
registry answers for the tag with a manifest digest. Basic auth is sent up front; a
registry that wants a bearer token says so in its 401 and gets one from its realm.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import requests

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
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

    def _base_url(self) -> str:
        """https, or plain http for a registry the operator marked as not verified."""
        if self._base:
            return self._base
        try:
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

    def _request(self, method: str, path: str, headers: dict | None = None) -> requests.Response:
        try:
            url = self._base_url() + path
            response = self._session.request(method, url, headers=headers, auth=self._auth, timeout=self._timeout,
                                             verify=self._tls_verify)
            if response.status_code == 401 and "bearer" in response.headers.get("WWW-Authenticate", "").lower():
                token = self._bearer_token(response.headers["WWW-Authenticate"])
                response = self._session.request(method, url,
                                                 headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                                                 timeout=self._timeout, verify=self._tls_verify)
        except requests.RequestException as exc:
            raise RegistryError(f"could not reach registry {self.host}: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise RegistryError(f"registry {self.host} refused the configured credentials (HTTP {response.status_code})")
        return response

    def _bearer_token(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise RegistryError(f"registry {self.host} asked for a token without saying where to get one")
        response = self._session.get(realm, params=params, auth=self._auth, timeout=self._timeout,
                                     verify=self._tls_verify)
        if response.status_code != 200:
            raise RegistryError(f"registry {self.host}'s token service refused (HTTP {response.status_code})")
        body = response.json()
        return body.get("token") or body.get("access_token")

    def manifest(self, repository: str, tag: str) -> Manifest | None:
        """The manifest the registry serves for `repository:tag`, None when it has none."""
        response = self._get(f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RegistryError(f"registry {self.host} answered HTTP {response.status_code} for {repository}:{tag}")
        digest = response.headers.get("Docker-Content-Digest")
        body = response.json()
        if not digest:
            raise RegistryError(f"registry {self.host} sent no digest for {repository}:{tag}")
        size = int(body.get("config", {}).get("size", 0)) + sum(int(layer.get("size", 0)) for layer in body.get("layers", []))
        return Manifest(digest=digest, media_type=body.get("mediaType") or response.headers.get("Content-Type", ""),
                        size_bytes=size)

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
