"""Azure's ``partition_format``: fields parsed from the paths of a file input.

Syntax (Azure ML's ``FileDatasetFactory.from_files``):

- ``{name}``: a string field, one or more characters within one path segment;
- ``{name:yyyy/MM/dd}``: a datetime field; ``yyyy``, ``MM``, ``dd``, ``HH``, ``mm`` and ``ss``
  stand for digits of the year, month, day, hour, minute and second, anything else for itself;
- ``*`` any characters within one segment, ``**`` any characters across segments, ``?`` one
  character; everything else stands for itself.

The format is matched against each file's path relative to its input root (the folder, or
the glob's part before its first wildcard); a leading ``/`` is ignored. It must describe the
path to its end, except that a trailing ``/`` takes every file below:
``"/{region}/{day}/"`` matches ``north/2024-01-02/a/b.png``, and ``"{region}/{day}/*.png"``
matches ``north/2024-01-02/b.png`` only.

As on Azure, where the format "starts from the position of the first partition key until the
end of the file path" and may begin with folders of the path, a format that starts with
literal folder names and does not match the relative path is matched against it with as
many of the input root's last folders in front, the nearest first:
``"dataset_partition_test/{user}/{season}/{genres}.wav"`` matches the file
``user1/winter/disco.wav`` of the input ``data/dataset_partition_test/*/*/*.wav`` (or of
the folder ``data/dataset_partition_test``) as well as
``dataset_partition_test/user1/winter/disco.wav`` of the input ``data``. Only literal
folders are taken from the root, never a field's value: ``"/{region}/{day}/"`` still needs
both levels below the root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

FIELD = re.compile(r"\{([^{}:]*)(?::([^{}]*))?\}")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DATE_TOKENS = {"yyyy": r"\d{4}", "MM": r"\d{2}", "dd": r"\d{2}", "HH": r"\d{2}",
                "mm": r"\d{2}", "ss": r"\d{2}"}
_DATE_TOKEN = re.compile("|".join(_DATE_TOKENS))
_DATE_PARTS = {"yyyy": "year", "MM": "month", "dd": "day", "HH": "hour", "mm": "minute",
               "ss": "second"}
FieldValue = str | datetime


@dataclass(frozen=True)
class PartitionFormat:
    """A parsed ``partition_format``.

    Parameters
    ----------
    text
        The format as the user wrote it.
    fields
        Field names in the order they appear.
    pattern
        The compiled regular expression a relative path must match in full.
    dates
        For each datetime field, its date tokens in order (``("yyyy", "MM", "dd")``).
    leading
        How many folders the format starts with that hold no field or wildcard: the most
        folders of the input root a path may be matched with.
    """

    text: str
    fields: tuple[str, ...]
    pattern: re.Pattern[str]
    dates: dict[str, tuple[str, ...]]
    leading: int = 0

    def values(self, relative: str, url: str | None = None) -> dict[str, FieldValue] | None:
        """The fields of one path (relative to its input root), or None if it does not match.

        ``url``: the file's whole path; when the relative path does not match, it is tried
        with the root's folders in front, one more at a time, up to :attr:`leading`.

        Raises
        ------
        ValueError
            When a datetime field holds an impossible date (month 13).
        """
        match = None
        for candidate in _candidates(relative, url, self.leading):
            match = self.pattern.fullmatch(candidate)
            if match is not None:
                break
        if match is None:
            return None
        found: dict[str, FieldValue] = {}
        for name in self.fields:
            if name in self.dates:
                parts = {_DATE_PARTS[token]: int(match.group(_date_group(name, i)))
                         for i, token in enumerate(self.dates[name])}
                parts.setdefault("month", 1)
                parts.setdefault("day", 1)
                found[name] = datetime(**parts)  # type: ignore[arg-type]
            else:
                found[name] = match.group(name)
        return found


def _candidates(relative: str, url: str | None, most: int) -> list[str]:
    """``relative``, then ``relative`` with one, two, ... (up to ``most``) folders of its
    root in front."""
    relative = relative.lstrip("/")
    found = [relative]
    if url is None or not url.endswith(relative):
        return found
    root = url[:len(url) - len(relative)].split("://", 1)[-1].strip("/")
    folders = [f for f in root.split("/") if f]
    for count in range(1, min(most, len(folders)) + 1):
        found.append("/".join([*folders[-count:], relative]))
    return found


def parse_partition_format(text: str) -> PartitionFormat:
    """Parse a ``partition_format``.

    Raises
    ------
    ValueError
        With what is wrong (an empty or unclosed field, a repeated name, an unknown date
        token), for the caller to name the parameter.
    """
    if not isinstance(text, str) or not text.strip("/ "):
        raise ValueError("must be a path pattern with fields such as '/{region}/{day}/'")
    body = text.lstrip("/")
    trailing = body.endswith("/")
    body = body.rstrip("/")
    regex: list[str] = []
    fields: list[str] = []
    dates: dict[str, tuple[str, ...]] = {}
    position = 0
    for match in FIELD.finditer(body):
        regex.append(_literal(body[position:match.start()]))
        name, date = match.group(1), match.group(2)
        if not FIELD_NAME.match(name):
            raise ValueError(f"has a field name that is not a name: {{{name}}}; use letters, "
                             f"digits and _")
        if name in fields:
            raise ValueError(f"names the field {name!r} twice")
        fields.append(name)
        if date is None:
            regex.append(f"(?P<{name}>[^/]+?)")
        else:
            tokens, date_regex = _date_pattern(name, date)
            dates[name] = tokens
            regex.append(date_regex)
        position = match.end()
    regex.append(_literal(body[position:]))
    if not fields:
        raise ValueError("has no field; name each folder level to use, e.g. '/{region}/{day}/'")
    if trailing:
        regex.append("/.+")
    leading = 0
    for segment in body.split("/")[:-1]:
        if FIELD.search(segment) or any(c in segment for c in "*?{}"):
            break
        leading += 1
    return PartitionFormat(text, tuple(fields), re.compile("".join(regex)), dates, leading)


def _literal(text: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError(f"has an unmatched brace in {text!r}; fields are written {{name}}")
    out: list[str] = []
    index = 0
    while index < len(text):
        if text.startswith("**", index):
            out.append(".*")
            index += 2
        elif text[index] == "*":
            out.append("[^/]*")
            index += 1
        elif text[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(text[index]))
            index += 1
    return "".join(out)


def _date_pattern(name: str, date: str) -> tuple[tuple[str, ...], str]:
    tokens: list[str] = []
    out: list[str] = []
    position = 0
    for match in _DATE_TOKEN.finditer(date):
        out.append(re.escape(date[position:match.start()]))
        token = match.group(0)
        if token in tokens:
            raise ValueError(f"field {name!r} repeats {token!r} in its date format {date!r}")
        out.append(f"(?P<{_date_group(name, len(tokens))}>{_DATE_TOKENS[token]})")
        tokens.append(token)
        position = match.end()
    out.append(re.escape(date[position:]))
    if "yyyy" not in tokens or re.search(r"[A-Za-z]", _DATE_TOKEN.sub("", date)):
        raise ValueError(f"field {name!r} has the date format {date!r}; use yyyy, MM, dd, HH, "
                         f"mm and ss, e.g. {{{name}:yyyy/MM/dd}}")
    return tuple(tokens), "".join(out)


def _date_group(name: str, index: int) -> str:
    return f"_date_{index}_{name}"
