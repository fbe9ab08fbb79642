"""setuptools' build backend, plus the startup files that load the plugin into `lm_eval`.

Every wheel this builds, regular or editable (PEP 660), also holds at its root, so that
they land in site-packages:

- `lm_eval_semcal.pth`: an `import` line that runs `lm_eval_semcal_autoload.install()`
  at interpreter start (site.py reads it; see that module for what it does);
- `lm_eval_semcal.start`: the same entry point for Pythons that read PEP 829 start
  files (3.15 on), where a start file of the same name turns the `.pth` file's import
  lines off, so the hook runs once whichever file a Python reads.

setuptools cannot place a file beside the packages in site-packages, so the finished
wheel is opened and the two files are added, each with its line in the wheel's RECORD.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403 - every other hook is setuptools' own

STARTUP_FILES = {
    "lm_eval_semcal.pth": "import lm_eval_semcal_autoload; lm_eval_semcal_autoload.install()\n",
    "lm_eval_semcal.start": "lm_eval_semcal_autoload:install\n",
}


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def add_startup_files(wheel_path: str) -> None:
    """Rewrite the wheel at `wheel_path` with the startup files at its root."""
    rewritten = wheel_path + ".tmp"
    with zipfile.ZipFile(wheel_path) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target:
        record_name = next(name for name in source.namelist() if name.endswith(".dist-info/RECORD"))
        for item in source.infolist():
            if item.filename != record_name and item.filename not in STARTUP_FILES:
                target.writestr(item, source.read(item.filename))
        record = source.read(record_name).decode()
        for name, text in STARTUP_FILES.items():
            data = text.encode()
            target.writestr(name, data)
            record += _record_line(name, data)
        target.writestr(record_name, record)
    os.replace(rewritten, wheel_path)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = build_meta.build_wheel(wheel_directory, config_settings, metadata_directory)
    add_startup_files(os.path.join(wheel_directory, name))
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = build_meta.build_editable(wheel_directory, config_settings, metadata_directory)
    add_startup_files(os.path.join(wheel_directory, name))
    return name
