"""A policy set: the ``.rego`` files of a directory, named by the hash of their content.

Reading is the only I/O here. The revision covers every file's path and bytes, so any
edit, addition, removal or rename gives a new revision, and two homes holding the same
files report the same revision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from supervisor.policy.errors import PolicySetError

__all__ = [
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_TOTAL_BYTES",
    "PolicyFile",
    "PolicySet",
    "fingerprint",
    "load_policy_set",
]

# Policy text is parsed in the supervisor: bound what a set can make it parse and hold.
MAX_FILES = 256
MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024
# Policy data comes from the registry, never from files beside the policies: a data file
# here would be a second, unreviewed source of truth (see docs/policies.md).
_DATA_SUFFIXES = (".json", ".yaml", ".yml")
TEST_SUFFIX = "_test.rego"


@dataclass(frozen=True)
class PolicyFile:
    path: str  # relative to the set's directory, '/'-separated
    text: str

    @property
    def is_test(self) -> bool:
        return self.path.endswith(TEST_SUFFIX)


@dataclass(frozen=True)
class PolicySet:
    """Files sorted by path; ``revision`` is the sha256 over their paths and contents."""

    revision: str
    files: tuple[PolicyFile, ...]

    @property
    def modules(self) -> tuple[PolicyFile, ...]:
        """The files that decide (tests excluded): what a serving engine loads."""
        return tuple(f for f in self.files if not f.is_test)

    @property
    def short(self) -> str:
        return self.revision[:12]

    @classmethod
    def from_files(cls, files: dict[str, str]) -> PolicySet:
        ordered = tuple(PolicyFile(path, files[path]) for path in sorted(files))
        digest = hashlib.sha256()
        for f in ordered:
            data = f.text.encode("utf-8")
            path = f.path.encode("utf-8")
            # Length-prefixed, so no two different sets hash the same bytes.
            digest.update(len(path).to_bytes(8, "big") + path + len(data).to_bytes(8, "big") + data)
        return cls(revision=digest.hexdigest(), files=ordered)


def _entries(directory: Path) -> list[Path]:
    """Regular files under ``directory``, skipping hidden names at any depth.

    Hidden entries are skipped because Kubernetes mounts a ConfigMap as symlinks into a
    hidden ``..data`` directory: following both would load every file twice.
    """
    found = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        found.append(path)
    return found


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap change detection for the watcher: (path, size, mtime) of every entry."""
    try:
        return tuple(
            (str(p.relative_to(directory)), st.st_size, st.st_mtime_ns)
            for p in _entries(directory)
            for st in (p.stat(),)
        )
    except OSError:
        return ()


def load_policy_set(directory: Path) -> PolicySet:
    """Read every ``*.rego`` file under ``directory``.

    Refuses a missing or empty directory (an empty set is an error, never "allow all"),
    data files, and anything over the size bounds.
    """
    if not directory.is_dir():
        raise PolicySetError(f"policy directory {directory} does not exist")
    files: dict[str, str] = {}
    total = 0
    try:
        for path in _entries(directory):
            rel = path.relative_to(directory).as_posix()
            if path.suffix in _DATA_SUFFIXES:
                raise PolicySetError(
                    f"{rel}: data files are not read; policy data comes from the registry (docs/policies.md)"
                )
            if path.suffix != ".rego":
                continue
            if len(files) >= MAX_FILES:
                raise PolicySetError(f"{directory} holds more than {MAX_FILES} .rego files")
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise PolicySetError(f"{rel} is {size} bytes, over the limit of {MAX_FILE_BYTES}")
            total += size
            if total > MAX_TOTAL_BYTES:
                raise PolicySetError(f"{directory} holds over {MAX_TOTAL_BYTES} bytes of policy")
            try:
                files[rel] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise PolicySetError(f"{rel} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise PolicySetError(f"cannot read the policy set in {directory}: {exc}") from exc
    if not any(not name.endswith(TEST_SUFFIX) for name in files):
        raise PolicySetError(f"{directory} holds no policy (.rego files other than *{TEST_SUFFIX})")
    return PolicySet.from_files(files)
