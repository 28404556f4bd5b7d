"""Uploads' rules: an input's name is one plain file name; a job's inputs name each upload
once and mount each at a name of its own; an upload a job names does not expire."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobd.domain.owners import Owner
from jobd.domain.records import now
from jobd.domain.uploads import InputFile, Upload, inputs_problem, upload_name_problem


@pytest.mark.parametrize("name", ["scene.blend", "a b.txt", ".hidden", "é" * 100])
def test_plain_file_names_are_taken(name: str) -> None:
    assert upload_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "give the file's name"),
        ("a/b", "not a plain file name"),
        ("..", "not a plain file name"),
        (".", "not a plain file name"),
        ("a\0b", "not a plain file name"),
        ("a\nb", "control character"),
        ("é" * 128, "longer than 255 bytes"),
    ],
)
def test_other_names_are_refused_saying_why(name: str, why: str) -> None:
    problem = upload_name_problem(name)
    assert problem is not None and why in problem


def item(slug: str, name: str) -> InputFile:
    return InputFile(slug=slug, name=name, sha256="ab" * 32, size_bytes=1)


def test_a_jobs_inputs_name_each_upload_once_each_at_its_own_path() -> None:
    assert inputs_problem(["u1", "u2"], [item("u1", "a"), item("u2", "b")]) is None
    assert "u1 is given twice" in (inputs_problem(["u1", "u1"], [item("u1", "a")]) or "")
    clash = inputs_problem(["u1", "u2"], [item("u1", "a"), item("u2", "a")])
    assert clash is not None and "u1 and u2 are both named 'a'" in clash


def test_an_input_round_trips_and_says_where_it_is_mounted() -> None:
    doc = item("u1", "scene.blend").to_api()
    assert doc["path"] == "/inputs/scene.blend"
    assert InputFile.from_api(doc) == item("u1", "scene.blend")


def test_an_upload_a_job_names_shows_no_expiry() -> None:
    used = now()
    upload = Upload(
        slug="u1",
        name="a",
        size_bytes=1,
        sha256="ab" * 32,
        owner=Owner(uid=1, user="dev", via="unix"),
        created_at=used,
        used_at=used,
    )
    assert upload.expires_at(86400) == used + timedelta(days=1)
    assert upload.to_api(expire_seconds=86400, used_by=[])["expiresAt"] is not None
    assert upload.to_api(expire_seconds=86400, used_by=["job-1"])["expiresAt"] is None
