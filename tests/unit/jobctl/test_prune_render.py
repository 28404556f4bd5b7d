"""How jobctl shows a prune and the doctor's fixes."""

from __future__ import annotations

from jobctl.render.node import doctor_details, prune_summary


def test_a_dry_prune_says_what_would_go_and_what_it_would_free() -> None:
    doc = {
        "dryRun": True,
        "runs": 2,
        "runIds": ["run-a", "run-b"],
        "logBytes": 1024,
        "outputBytes": 3 * 1024,
        "freedBytes": 4 * 1024,
    }
    assert prune_summary(doc) == (
        "would remove 2 finished runs: would free 4.0 KiB (logs 1.0 KiB, outputs 3.0 KiB)\n"
        "  run-a\n  run-b"
    )
    done = {**doc, "dryRun": False, "runs": 1, "runIds": ["run-a"]}
    assert prune_summary(done).startswith("removed 1 finished run: freed 4.0 KiB")


def test_doctor_lists_how_to_fix_what_warned_or_failed() -> None:
    checks = [
        {"name": "clock", "level": "ok", "message": "synchronized"},
        {"name": "socket", "level": "fail", "message": "mode 0666", "fix": "chmod 0660 /s"},
    ]
    text = doctor_details({"ok": False, "checks": checks})
    assert text.endswith("To fix:\n  socket: chmod 0660 /s")
    assert "To fix" not in doctor_details({"ok": True, "checks": checks[:1]})
