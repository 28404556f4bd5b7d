"""`jobctl run --ssh-key FILE`: the public keys a file holds; a private key never leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobctl.parsing import read_ssh_keys


def test_every_key_line_of_a_file(tmp_path: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text("# mine\nssh-ed25519 AAAA1 a@x\n\n  ssh-rsa AAAA2 b@y  \n")
    assert read_ssh_keys(keys) == ("ssh-ed25519 AAAA1 a@x", "ssh-rsa AAAA2 b@y")


def test_a_private_key_an_empty_file_and_a_missing_one_are_refused(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    with pytest.raises(ValueError, match="private key"):
        read_ssh_keys(private)
    empty = tmp_path / "empty.pub"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no public key"):
        read_ssh_keys(empty)
    with pytest.raises(ValueError, match=r"missing\.pub"):
        read_ssh_keys(tmp_path / "missing.pub")
