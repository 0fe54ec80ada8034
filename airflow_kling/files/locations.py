"""Locations confined to roots.

Whether a local path or an object-store URI that someone else wrote (a DAG param, an XCom) lies under one of
the roots that an administrator allowed.

A local path is compared absolute and resolved (symbolic links followed: a link out of a root is out of
it), an object-store URI by its bucket and key with ``.`` and ``..`` refused; ``http(s)`` and other
non-storage schemes are never under a root. And where an archive's file name template puts a file under its
destination (:func:`template_parts`).
"""

from __future__ import annotations

import os
import posixpath
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from airflow_kling.exceptions import ScenarioValidationError

NOT_STORAGE = frozenset({"http", "https", "ftp", "ftps", "data", "memory", "ssh", "sftp"})
"""Schemes that are never an archive or input location."""
INPUTS_SECTION = "kling"
INPUT_ROOTS_OPTION = "input_roots"


class UntrustedValue(ValueError):
    """A location that is not plain, or lies under none of the allowed roots: nothing is read from it."""


@dataclass(frozen=True)
class Root:
    """An allowed root.

    ``scheme`` ``file`` with an absolute, resolved ``path``, or an object store's scheme with
    ``bucket/prefix`` as ``path``.
    """

    scheme: str
    path: str

    def holds(self, scheme: str, path: str) -> bool:
        """Whether ``scheme`` and ``path`` lie under this root."""
        if scheme != self.scheme:
            return False
        root = self.path.rstrip("/")
        return path == root or path.startswith(f"{root}/")


def roots(text: str, setting: str) -> tuple[Root, ...]:
    """The roots of a comma-separated setting.

    :param setting: the setting's name, for the error.
    :raises ValueError: a root is not a storage location.
    """
    parsed = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        scheme, path = parse_location(item)
        if scheme in NOT_STORAGE:
            raise ValueError(f"{setting}: {scheme}:// is not a storage location")
        parsed.append(Root(scheme, path))
    return tuple(parsed)


def under_roots(location: str, allowed: tuple[Root, ...]) -> tuple[str, str]:
    """``(scheme, path)`` of ``location`` when it lies under one of ``allowed``.

    :raises UntrustedValue: it does not, or is not a plain location (the location of an unknown scheme,
        which may carry credentials, is not echoed).
    """
    scheme, path = parse_location(location)
    if not any(root.holds(scheme, path) for root in allowed):
        shown = path if scheme not in NOT_STORAGE else "..."
        raise UntrustedValue(f"{scheme}:// location {shown} is under none of the allowed roots")
    return scheme, path


def parse_location(text: str) -> tuple[str, str]:
    """``(scheme, path)`` of a local path or URI.

    A local path absolute and resolved, an object-store path normalized.

    :raises UntrustedValue: the text is not a plain location.
    """
    if "://" not in text:
        if not os.path.isabs(text):
            raise UntrustedValue("a local location must be an absolute path")
        return "file", os.path.realpath(text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment or "\\" in text or "\x00" in text:
        raise UntrustedValue(f"a {scheme}:// location with a query, a fragment or a backslash is not read")
    if scheme in ("file", "local"):
        if parts.netloc not in ("", "localhost"):
            raise UntrustedValue("a file:// location on another host is not read")
        return "file", os.path.realpath(parts.path or "/")
    if not parts.netloc or "@" in parts.netloc or any(part in ("..", ".") for part in parts.path.split("/")):
        raise UntrustedValue(
            f"a {scheme}:// location needs a bucket, no user in it and no '.' or '..' in its path"
        )
    return scheme, posixpath.normpath(f"{parts.netloc}/{parts.path.lstrip('/')}")


def check_input_location(location: str, argument: str) -> str:
    """``location`` when the deployment lets DAG params name it.

    Any location unless the Airflow setting ``[kling] input_roots`` (``AIRFLOW__KLING__INPUT_ROOTS``,
    comma-separated local folders and object-store prefixes) is set, else only one under those roots. Without
    the setting, a DAG param is read and written with the worker's rights, as any task's file argument is.

    :param argument: the param's name, for the error.
    :raises ScenarioValidationError: naming ``argument`` and the setting, before anything is read.
    """
    from airflow_kling.version_compat import conf

    setting = conf.get(INPUTS_SECTION, INPUT_ROOTS_OPTION, fallback=None)
    if not setting:
        return location
    try:
        under_roots(location, roots(setting, f"[{INPUTS_SECTION}] {INPUT_ROOTS_OPTION}"))
    except UntrustedValue as error:
        raise ScenarioValidationError(
            f"{argument}={location!r} is refused: {error} ([{INPUTS_SECTION}] {INPUT_ROOTS_OPTION})"
        ) from None
    return location


TEMPLATE_FIELDS = frozenset({"job_id", "asset_id", "ext"})
"""The fields an archive's ``file_name_template`` may name."""


def template_parts(template: str, job_id: str, asset_id: str, ext: str) -> list[str]:
    """The folders and file name ``template`` gives for these (checked) ids and extension.

    :raises ScenarioValidationError: naming ``file_name_template`` when it has a field other than plain
        ``{job_id}``, ``{asset_id}`` and ``{ext}`` (no attribute, index, conversion or format), unmatched
        braces, or gives no relative path of named parts (an empty, ``.`` or ``..`` part, a leading ``/``).
    """
    try:
        fields = [
            (name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
        ]
    except ValueError as error:
        raise ScenarioValidationError(
            f"file_name_template {template!r} is not a format string: {error}"
        ) from None
    for name, spec, conversion in fields:
        if name is not None and (name not in TEMPLATE_FIELDS or spec or conversion):
            raise ScenarioValidationError(
                f"file_name_template {template!r} takes only {{job_id}}, {{asset_id}} and {{ext}}, as they are: "
                f"got {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
            )
    relative = template.format(job_id=job_id, asset_id=asset_id, ext=ext)
    parts = relative.replace("\\", "/").split("/")
    if relative.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ScenarioValidationError(
            f"file_name_template {template!r} gives {relative!r}, not a relative path of named parts "
            "under destination (no empty, '.' or '..' part, no leading '/')"
        )
    return parts


def check_file_name_template(template: str) -> None:
    """Refuse a template :func:`template_parts` would refuse, for any ids (at DAG parse, for a literal)."""
    template_parts(template, "job_example", "asset_example", "mp4")
