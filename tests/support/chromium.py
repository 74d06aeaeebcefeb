"""Headless Chromium (Debian's ``chromium``) for the gallery tests: load a page, read its DOM."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, *extra: str) -> tuple[str, str]:
    """Load ``url`` in headless Chromium (nothing downloaded); return (stdout, stderr)."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp()
    try:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return done.stdout, done.stderr


def console(stderr: str) -> list[str]:
    """The page's console messages (errors included) in Chromium's log."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]
