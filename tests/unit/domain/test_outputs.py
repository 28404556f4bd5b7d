"""What a run's outputs are said to be: clean paths, the newest image as its preview."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobd.domain.outputs import OutputFile, OutputSummary, output_path_problem, size_text


def at(path: str, second: int) -> OutputFile:
    return OutputFile(
        path=path, size_bytes=10, modified_at=datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)
    )


def test_the_preview_is_the_newest_image() -> None:
    files = [at("frames/0001.png", 1), at("frames/0002.EXR", 3), at("log.txt", 9)]
    summary = OutputSummary.of(files)
    assert (summary.files, summary.bytes, summary.preview) == (3, 30, "frames/0002.EXR")
    doc = summary.to_api("run-1")
    assert doc["previewUrl"] == "/v1/runs/run-1/outputs/frames/0002.EXR"
    assert OutputSummary.of([at("a.txt", 1)]).to_api("run-1")["previewUrl"] is None
    gone = OutputSummary(files=1, bytes=1, kept=False, preview="a.png")
    assert gone.to_api("run-1")["previewUrl"] is None
    assert OutputSummary.from_record(summary.to_record()) == summary


@pytest.mark.parametrize(
    ("path", "clean"),
    [("a.png", True), ("a/b/c", True), ("../a", False), ("/a", False), ("a/./b", False),
     ("a//b", False), ("", False), ("a/", False)],
)  # fmt: skip
def test_output_paths(path: str, clean: bool) -> None:
    assert (output_path_problem(path) is None) is clean


def test_sizes_read_as_people_read_them() -> None:
    assert [size_text(n) for n in (812, 4300, 3 * 2**30)] == ["812 B", "4.2 KiB", "3.0 GiB"]
