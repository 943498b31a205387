"""Sentences the services store in English, shown in the request's language.

What this module owns: the sentence templates the worker and the services write into rows
a person reads on a page — a job's error summary (``BuildJob.error``), its running step
(``BuildJob.progress``), why it was made (``BuildJob.trigger_detail``) and a spec's last
base-check failure (``ImageSpec.base_check_error``, the registry client's errors) — and
``display``, which the templates call (the ``stored_text`` filter) to show them.

Each template is written once, as a message id with named placeholders; the writers
format it (``PUSH_FAILED % {"image": ref, "error": text}``), so the stored text is the
English sentence the JSON API, the logs and automation have always read, and a wording
changed here changes both the writer and the matcher. A page in English shows the value
as stored. A translated page matches it against the templates (anchored at both ends,
placeholders as non-greedy groups, compiled once) and shows the translation with the
placeholders' values as stored (package names, versions, image references, numbers); a
few placeholders that hold one of a fixed set of English words are translated as well.
Text no template matches (old rows, truncated ones, the build log's own lines) is shown
as stored. Audit rows have their own table (app/audit/labels.py).
"""
from __future__ import annotations

import re

from .catalog import translations
from .labels import N_, shows_stored_values

# -- BuildJob.error: the runner (app/builds/runner.py) ----------------------------------
CANCELLED_BEFORE_START = N_("Cancelled before it started.")
ENDED_UNEXPECTEDLY = N_("The build ended unexpectedly.")
CANCELLED_BY_ADMIN = N_("Cancelled by an admin.")
TIMED_OUT = N_("The build timed out after %(seconds)s s (BUILD_TIMEOUT).")
WORKER_SHUT_DOWN = N_("The worker shut down during the build (a deploy or restart); rebuild to try again.")
RQ_TIMEOUT = N_("RQ's job timeout ended the build; it overran BUILD_TIMEOUT and could not be stopped in time.")
INTERNAL_ERROR = N_("Internal error: %(exception)s: %(detail)s")
PULL_SECRET_GONE = N_("The pull secret %(secret)s no longer exists; choose another one for this spec.")
CREDENTIAL_OTHER_REGISTRY = N_(
    "Credential %(credential)s is for registry %(registry)s, but the base image %(image)s comes from "
    "%(host)s; it is not sent there.")
LOCAL_BASE_MISSING = N_(
    "The base image %(image)s is not in the build host's local image storage (images under localhost/ "
    "are never pulled).")
PULLED_BASE_MISSING = N_("Podman reported pulling %(image)s but does not have it.")
PULL_CREDENTIAL_REFUSED = N_(
    "Credential %(credential)s was refused by registry %(host)s for %(image)s: check its username and "
    "password on the Credentials page.")
PULL_NEEDS_CREDENTIAL = N_(
    "The base image %(image)s needs a registry credential (%(host)s asked for one, or the image does not "
    "exist there): tick 'use image pull secret' and choose a credential for %(host)s.")
BASE_NOT_FOUND = N_("The base image %(image)s was not found in registry %(host)s: %(error)s")
PULL_FAILED = N_("Pulling the base image %(image)s failed: %(error)s")
CONDA_TOOL_MISSING = N_(
    "Conda packages need micromamba, mamba or conda in the base image, and %(image)s has none. Use a base "
    "image that ships one (for example mambaorg/micromamba) or move these packages to pip.")
CA_BUNDLE_UNREADABLE = N_("BUILD_CA_BUNDLE %(path)s cannot be read: %(reason)s")
DISK_FULL = N_(
    "The build host ran out of disk space (no space left on device) during the build: free space in "
    "Podman's storage on the build host, then build again. (Podman: %(error)s)")
BUILD_FAILED_AT_LINE = N_("The build failed: %(line)s (Podman: %(error)s)")
BUILD_FAILED = N_("The build failed: %(error)s.")
NO_IMAGE_TAGGED = N_("The build ended without an image tagged %(image)s.")
NOT_LISTED_AFTER_PUSH = N_("The registry %(host)s does not list %(repository)s:%(tag)s after the push.")
PUSH_FAILED = N_("Pushing %(image)s failed: %(error)s")

# -- BuildJob.error: verification (app/builds/verify.py) --------------------------------
IMAGE_LACKS = N_("The image does not have what the spec asks for: %(problems)s. Nothing was pushed.")
IMAGE_LACKS_MORE = N_(
    "The image does not have what the spec asks for: %(problems)s (and %(more)s more in the log). "
    "Nothing was pushed.")
LISTING_STOPPED = N_("Listing the image's packages stopped before its end (exit %(code)s).")
LISTING_STOPPED_SILENT = N_(
    "Listing the image's packages stopped before its end (exit %(code)s) and printed nothing: the image "
    "needs a working /bin/sh.")
LISTING_TIMED_OUT = N_("Listing the image's packages took longer than %(seconds)s s")
LISTING_TOO_BIG = N_("The image's package listing is over %(bytes)s bytes; it was not read.")
TOO_MANY_PACKAGES = N_("The image lists more than %(limit)s %(manager)s packages; its manifest was not stored.")
TEST_FAILED = N_("The test command failed (exit %(code)s); nothing was pushed.")
TEST_TIMED_OUT = N_("The test command ran past TEST_TIMEOUT (%(seconds)s s) and was stopped; nothing was pushed.")

# -- BuildJob.error: Podman (app/builds/podman.py) --------------------------------------
PODMAN_FAILED = N_("Podman failed %(action)s: %(message)s")
PODMAN_NO_ANSWER = N_("The Podman service at %(url)s does not answer: %(cause)s")
PODMAN_PING_STATUS = N_("The Podman service at %(url)s answered %(status)s to a ping.")
PODMAN_EXIT_CODE = N_("Podman answered %(answer)s for a container's exit code")
# What Podman was doing (PODMAN_FAILED's action).
PODMAN_WAITING_THROWAWAY = N_("waiting for a throwaway container")
PODMAN_INSPECTING = N_("inspecting image %(image)s")
PODMAN_TAGGING = N_("tagging %(image)s as %(repository)s:%(tag)s")
PODMAN_REMOVING = N_("removing image %(image)s")
PODMAN_WAITING = N_("waiting for a container of %(image)s")
PODMAN_READING = N_("reading the output of a container of %(image)s")
PODMAN_CREATING = N_("creating a container from %(image)s")
PODMAN_STARTING = N_("starting a container from %(image)s")
PODMAN_READING_ANY = N_("reading a container's output")
PODMAN_LISTING_BUILDS = N_("listing build containers")

# -- BuildJob.error and ImageSpec.base_check_error: the registry (app/builds/registry.py,
#    app/watch/base_check.py) ------------------------------------------------------------
REGISTRY_UNREACHABLE = N_("could not reach registry %(host)s: %(exception)s")
REGISTRY_REFUSED_CREDENTIALS = N_("registry %(host)s refused the configured credentials (HTTP %(status)s)")
REGISTRY_NO_TOKEN_REALM = N_("registry %(host)s asked for a token without saying where to get one")
REGISTRY_TOKEN_REFUSED = N_("registry %(host)s's token service refused (HTTP %(status)s)")
REGISTRY_HTTP = N_("registry %(host)s answered HTTP %(status)s for %(repository)s:%(tag)s")
REGISTRY_HTTP_INDEX = N_("registry %(host)s answered HTTP %(status)s for the index of %(repository)s:%(tag)s")
REGISTRY_NO_DIGEST = N_("registry %(host)s sent no digest for %(repository)s:%(tag)s")
REGISTRY_HAS_NO_TAG = N_("registry %(host)s has no %(repository)s:%(tag)s")

# -- BuildJob.error: cancels and the reconciler (app/builds/control.py, app/ops/reconcile.py)
CANCELLED_BY_ADMIN_REASON = N_("cancelled by an admin")
SUPERSEDED = N_("superseded by r%(revision)s")
SPEC_DELETED = N_("spec %(spec)s deleted")
WORKER_LOST = N_("worker lost (no heartbeat since %(since)s UTC)")
NEVER_STARTED = N_(
    "never started: its RQ job ended %(rq_status)s again after a retry, before the worker took it "
    "(details in the RQ dashboard, /ops/rq)")

# -- BuildJob.progress: the running step (app/builds/runner.py, verify.py, logwriter.py) ---
PULLING_BASE = N_("pulling base image")
PREFLIGHT = N_("pre-flight")
BUILDING = N_("building")
VERIFYING = N_("verifying")
PUSHING = N_("pushing")
CONFIRMING = N_("confirming")
CONTAINERFILE_STEP = N_("STEP %(step)s/%(steps)s")

# -- BuildJob.trigger_detail (app/revisions/pin.py) -------------------------------------
PINNED_DETAIL = N_("pinned to r%(revision)s's versions")
PINNED_BASE_DETAIL = N_("pinned to r%(revision)s's versions and base digest")

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


class _Template:
    """One message id as a matcher: a fullmatch regex and the literal text it starts with."""

    __slots__ = ("msgid", "prefix", "regex", "literal_length")

    def __init__(self, msgid: str):
        parts = _PLACEHOLDER.split(msgid)  # literal, name, literal, name, ..., literal
        pattern, seen = [], set()
        for index, part in enumerate(parts):
            if index % 2 == 0:
                pattern.append(re.escape(part))
            elif part in seen:
                pattern.append(f"(?P={part})")
            else:
                seen.add(part)
                pattern.append(f"(?P<{part}>.*?)")
        self.msgid = msgid
        self.prefix = parts[0]
        self.regex = re.compile("".join(pattern), re.DOTALL)
        self.literal_length = sum(len(part) for part in parts[::2])


class Sentences:
    """A set of templates, tried most specific first (the most literal text); a text is
    looked up once in a dict when it has no placeholder, else only against the templates
    whose literal start it has."""

    def __init__(self, msgids, values=None):
        self.msgids = tuple(msgids)
        self._values = values or {}
        self._plain = {m for m in self.msgids if not _PLACEHOLDER.search(m)}
        templates = sorted((_Template(m) for m in self.msgids if m not in self._plain),
                           key=lambda t: -t.literal_length)
        self._by_first = {}
        self._open = [t for t in templates if not t.prefix]  # a placeholder first
        for template in templates:
            if template.prefix:
                self._by_first.setdefault(template.prefix[0], []).append(template)
        for listed in self._by_first.values():
            listed.extend(self._open)
            listed.sort(key=lambda t: -t.literal_length)

    def match(self, text: str) -> tuple[str, dict] | None:
        """(message id, placeholder values) of the template `text` was made from."""
        if text in self._plain:
            return text, {}
        for template in self._by_first.get(text[:1], self._open):
            if text.startswith(template.prefix):
                found = template.regex.fullmatch(text)
                if found:
                    return template.msgid, found.groupdict()
        return None

    def translate(self, text: str) -> str:
        found = self.match(text)
        if found is None:
            return text
        msgid, values = found
        for name, word in self._values.items():
            if name in values:
                values[name] = word(values[name])
        return translations().ugettext(msgid) % values


def _rq_status_word(value: str) -> str:
    word = RQ_STATUS_WORDS.get(value)
    return translations().ugettext(word) if word else value


# RQ's final job states (NEVER_STARTED's rq_status) in words.
RQ_STATUS_WORDS = {
    "finished": N_("finished"),
    "failed": N_("failed"),
    "stopped": N_("stopped"),
    "canceled": N_("canceled"),
}

PODMAN_ACTIONS = Sentences((
    PODMAN_WAITING_THROWAWAY, PODMAN_INSPECTING, PODMAN_TAGGING, PODMAN_REMOVING, PODMAN_WAITING,
    PODMAN_READING, PODMAN_CREATING, PODMAN_STARTING, PODMAN_READING_ANY, PODMAN_LISTING_BUILDS,
))

STORED = Sentences(
    (
        CANCELLED_BEFORE_START, ENDED_UNEXPECTEDLY, CANCELLED_BY_ADMIN, TIMED_OUT, WORKER_SHUT_DOWN, RQ_TIMEOUT,
        INTERNAL_ERROR, PULL_SECRET_GONE, CREDENTIAL_OTHER_REGISTRY, LOCAL_BASE_MISSING, PULLED_BASE_MISSING,
        PULL_CREDENTIAL_REFUSED, PULL_NEEDS_CREDENTIAL, BASE_NOT_FOUND, PULL_FAILED, CONDA_TOOL_MISSING,
        CA_BUNDLE_UNREADABLE, DISK_FULL, BUILD_FAILED_AT_LINE, BUILD_FAILED, NO_IMAGE_TAGGED,
        NOT_LISTED_AFTER_PUSH, PUSH_FAILED,
        IMAGE_LACKS, IMAGE_LACKS_MORE, LISTING_STOPPED, LISTING_STOPPED_SILENT, LISTING_TIMED_OUT,
        LISTING_TOO_BIG, TOO_MANY_PACKAGES, TEST_FAILED, TEST_TIMED_OUT,
        PODMAN_FAILED, PODMAN_NO_ANSWER, PODMAN_PING_STATUS, PODMAN_EXIT_CODE,
        REGISTRY_UNREACHABLE, REGISTRY_REFUSED_CREDENTIALS, REGISTRY_NO_TOKEN_REALM, REGISTRY_TOKEN_REFUSED,
        REGISTRY_HTTP, REGISTRY_HTTP_INDEX, REGISTRY_NO_DIGEST, REGISTRY_HAS_NO_TAG,
        CANCELLED_BY_ADMIN_REASON, SUPERSEDED, SPEC_DELETED, WORKER_LOST, NEVER_STARTED,
        PULLING_BASE, PREFLIGHT, BUILDING, VERIFYING, PUSHING, CONFIRMING, CONTAINERFILE_STEP,
        PINNED_DETAIL, PINNED_BASE_DETAIL,
    ),
    values={"rq_status": _rq_status_word, "action": PODMAN_ACTIONS.translate},
)


def display(text: str | None) -> str | None:
    """A stored sentence in the request's language: as stored in English (and outside a
    request), translated when a template matches it, else as stored."""
    if not text or shows_stored_values():
        return text
    return STORED.translate(text)


def register_stored_text(app) -> None:
    app.add_template_filter(display, "stored_text")
