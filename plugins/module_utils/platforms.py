# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Platforms (``os/architecture[/variant]``) as OCI indexes describe them."""

import platform as _host

from .errors import ImageError

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm", "i386": "386", "i686": "386"}


class Platform:
    def __init__(self, os_name, architecture, variant=None):
        self.os = os_name
        self.architecture = _ARCH_ALIASES.get(architecture, architecture)
        self.variant = variant or None
        if self.architecture == "arm64" and self.variant == "v8":
            self.variant = None

    def __str__(self):
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def __eq__(self, other):
        return isinstance(other, Platform) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))

    def matches(self, described):
        """Whether an index entry's ``platform`` object (or None) fits this platform."""
        if not described:
            return True
        other = Platform(described.get("os", ""), described.get("architecture", ""), described.get("variant"))
        if other.os != self.os or other.architecture != self.architecture:
            return False
        return self.variant is None or other.variant is None or other.variant == self.variant


def parse_platform(text):
    """``linux/amd64``, ``linux/arm64/v8``, ``linux/arm/v7``; None → the host's platform."""
    if not text:
        return host_platform()
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError("invalid platform %r: expected os/architecture[/variant], e.g. linux/amd64" % text)
    return Platform(*parts)


def host_platform():
    machine = _host.machine().lower()
    variant = "v7" if machine.startswith("armv7") else None
    return Platform("linux", "arm" if machine.startswith("armv") else machine, variant)


class PlatformSelection:
    """The platforms of a multi-platform image to use: one or several named ones, or all of them."""

    def __init__(self, platforms, everything=False):
        self.platforms = list(platforms)
        self.everything = everything

    @property
    def several(self):
        return self.everything or len(self.platforms) > 1

    def matches(self, described):
        return self.everything or any(platform.matches(described) for platform in self.platforms)

    def matching(self, described):
        """The selected platforms ``described`` (an index entry's ``platform``) fits."""
        return [None] if self.everything else [platform for platform in self.platforms if platform.matches(described)]

    def __str__(self):
        return "all" if self.everything else ", ".join(str(platform) for platform in self.platforms)


def parse_platforms(value):
    """``all``, one platform, a comma-separated string or a list of them; None or empty → the host's platform."""
    if value in (None, "", [], ()):
        return PlatformSelection([host_platform()])
    if isinstance(value, PlatformSelection):
        return value
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [name.strip() for name in names if name and name.strip()]
    if "all" in names:
        return PlatformSelection([], everything=True)
    return PlatformSelection([parse_platform(name) for name in names])
