"""The pure parts of jobctl's command line: durations, KEY=VALUE pairs, times, ids, and
recipe files.

Each parser raises ValueError with a message fit to follow "Invalid value for '--option': "."""

from __future__ import annotations

import io
import re
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

IdKind = Literal["job", "run"]
ID_KINDS: tuple[IdKind, ...] = ("job", "run")

UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Units largest first, each at most once: 1h30m, 2d12h, 90s. ASCII digits only (no '²').
DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")


def parse_duration(text: str) -> int:
    """`90`, `90s`, `15m`, `2h`, `3d`, `1h30m` -> whole seconds (at least 1)."""
    raw = text.strip().lower()
    seconds = _duration_seconds(raw)
    if seconds is None:
        raise ValueError(f"{text!r} is not a duration (examples: 90, 90s, 15m, 2h, 3d, 1h30m)")
    if seconds < 1:
        raise ValueError(f"{text!r}: a duration must be at least 1 second")
    return seconds


def _duration_seconds(raw: str) -> int | None:
    if raw.isascii() and raw.isdigit():
        return int(raw)
    match = DURATION.fullmatch(raw)
    if not raw or match is None:
        return None
    counts = zip(match.groups(), UNIT_SECONDS.values(), strict=True)
    return sum(int(count) * unit for count, unit in counts if count is not None)


def parse_pair(text: str) -> tuple[str, str]:
    """`KEY=VALUE` -> (KEY, VALUE). The value may be empty or contain '='."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key, value


SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(text: str) -> int:
    """`20GB` (decimal, as disks are sold), `1.5GiB` (binary), `500MB`, `4096` (bytes)."""
    match = SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (examples: 20GB, 1.5GiB, 500MB)")
    number, unit = match.groups()
    size = int(float(number) * SIZE_UNITS[(unit or "b").lower()])
    if size < 1:
        raise ValueError(f"{text!r}: a size must be at least one byte")
    return size


def parse_volume(text: str) -> dict[str, Any]:
    """`NAME:/data`, `/host/path:/data`, each with an optional `:ro` (or `:rw`), as
    `podman run -v` reads them -> the API's {source, target, readOnly}."""
    parts = text.split(":")
    mode = parts.pop() if len(parts) == 3 else "rw"
    if len(parts) != 2 or not parts[0] or mode not in ("ro", "rw"):
        raise ValueError(f"expected NAME:/path or /host/path:/path, :ro to read only; got {text!r}")
    source, target = parts
    if not target.startswith("/"):
        raise ValueError(f"{text!r}: the path in the container must be absolute")
    return {"source": source, "target": target, "readOnly": mode == "ro"}


def read_env_file(path: Path) -> dict[str, str]:
    """A dotenv file's variables (python-dotenv's reading: comments, quotes, `export`); a key
    without a value is an empty string, as `podman run --env-file` has it."""
    from dotenv import dotenv_values  # only here: jobctl starts without it

    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror or e}") from None
    return {k: v or "" for k, v in dotenv_values(stream=io.StringIO(text)).items()}


def read_ssh_keys(path: Path) -> tuple[str, ...]:
    """The public keys in a .pub or authorized_keys file: each line but blanks and comments.
    A private key is refused here, before it goes anywhere."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    if "PRIVATE KEY" in text:
        raise ValueError(f"{path} is a private key: give its .pub file")
    keys = tuple(line.strip() for line in text.splitlines() if line.strip()[:1] not in ("", "#"))
    if not keys:
        raise ValueError(f"{path} holds no public key")
    return keys


def parse_since(text: str, now: datetime | None = None) -> str:
    """A relative duration (`10m`: ten minutes before now) or an RFC 3339 time, as RFC 3339 UTC.

    A time without an offset is taken as local time, which is what a person typing it means."""
    try:
        moment = (now or datetime.now(UTC)) - timedelta(seconds=parse_duration(text))
    except ValueError:
        moment = _parse_time(text)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (10m, 2h) nor an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.astimezone()


HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def id_kind(value: str) -> IdKind | None:
    """Whether a value is a job's id (or a prefix of one) or a run's: the daemon's ids carry
    their kind as a prefix. None for what the daemon resolves by itself: a job's name, or an
    id prefix given without its kind."""
    for kind in ID_KINDS:
        digits = value.removeprefix(f"{kind}-")
        if digits != value and set(digits) <= HEX_DIGITS:
            return kind
    return None


def check_id(value: str, *kinds: IdKind) -> str:
    """The id, id prefix or job name, unless it is plainly an id of a kind the command does
    not take (the daemon resolves the rest, and says what it does not find)."""
    if not value.strip():
        raise ValueError("give an id, a unique prefix of one, or a job's name")
    kind = id_kind(value)
    if kind is not None and kind not in kinds:
        raise ValueError(f"{value!r} is a {kind} id; expected a {' or '.join(kinds)} id")
    return value


def load_recipe_file(path: Path) -> dict[str, Any]:
    """A recipe from a TOML file (.toml), or YAML (anything else, JSON included); `-` is
    stdin, read as YAML. ValueError says what is wrong with it."""
    text = sys.stdin.read() if str(path) == "-" else _read(path)
    try:
        if path.suffix == ".toml":
            doc: Any = tomllib.loads(text)
        else:
            import yaml  # only here: most commands never read YAML

            doc = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    except Exception as e:  # yaml.YAMLError, without importing yaml at the top
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected one recipe (a table of fields)")
    return doc


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ValueError(f"{path}: {e.strerror}") from None
