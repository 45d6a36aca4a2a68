"""Release numbers of installed packages, for features that need a newer one than the core does."""

from __future__ import annotations


def release(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string: ``"2.14.1+cu130"`` -> ``(2, 14)``,
    ``"0.24.0rc1"`` -> ``(0, 24)``.

    Raises:
        ValueError: no ``major.minor`` numbers at the start of ``version``.
    """
    major, minor = version.split("+")[0].split(".")[:2]
    return int(major), int(minor)
