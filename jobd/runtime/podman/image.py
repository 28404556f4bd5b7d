"""jobd's embedded default image: a busybox userland built locally, so a first job needs no
registry. It is built on first use from the host's static busybox (Debian: busybox-static)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from jobd.errors import ImageNotFound

DEFAULT_IMAGE = "localhost/jobd/busybox:latest"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
APPLETS = (
    "sh",
    "ash",
    "echo",
    "cat",
    "sleep",
    "true",
    "false",
    "env",
    "ls",
    "head",
    "tail",
    "seq",
    "dd",
    "yes",
    "wc",
    "grep",
    "date",
    "id",
    "mkdir",
    "rm",
    "cp",
    "mv",
    "touch",
    "printf",
    "test",
    "[",
    "kill",
    "ps",
    "uname",
    "hostname",
    "sed",
    "awk",
    "tr",
    "cut",
    "sort",
    "uniq",
    "xargs",
    "find",
    "stat",
    "du",
    "df",
    "free",
    "top",
    "nproc",
    "whoami",
    "timeout",
    "tee",
    "md5sum",
    "sha256sum",
    "base64",
    "gzip",
    "gunzip",
    "tar",
    "wget",
    "nc",
    "vi",
)
CONTAINERFILE = 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n'


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    raise ImageNotFound(
        f"the embedded image {DEFAULT_IMAGE} needs a static busybox on the host"
        " (apt-get install busybox-static)"
    )


def prepare_context(directory: Path) -> Path:
    """Write a build context (Containerfile + rootfs) for the embedded image into `directory`."""
    rootfs = directory / "rootfs"
    bin_dir = rootfs / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("tmp", "etc", "root", "work"):
        (rootfs / name).mkdir()
    shutil.copy2(find_busybox(), bin_dir / "busybox")
    for applet in APPLETS:
        (bin_dir / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    (directory / "Containerfile").write_text(CONTAINERFILE)
    return directory


def temporary_context() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="jobd-image-")
