"""The repository is self-contained: no tracked file reads the team's notes folder beside the
checkout, which a user who clones the repository does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FOLDER = "sha" + "red"  # spelled in two parts so this file does not match itself
# "../<folder>" in any text, or a Python path join ``.parent / "<folder>"``.
OUTSIDE_REFERENCE = re.compile(r"\.\./" + FOLDER + r"\b|parents?(\[\d+\])?\s*/\s*[\"']" + FOLDER + r"[\"']")


def tracked_files() -> list[Path]:
    """``git ls-files`` when this is a git checkout, else every file outside virtual envs and caches."""
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        return [REPO_ROOT / name for name in listing.stdout.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        skipped = {".git", "runs", "__pycache__", ".pytest_cache"}
        return [
            path for path in REPO_ROOT.rglob("*")
            if path.is_file() and not any(part in skipped or part.startswith(".venv") for part in path.relative_to(REPO_ROOT).parts)
        ]


def test_pattern_catches_both_spellings() -> None:
    assert OUTSIDE_REFERENCE.search("BENCH=${BENCH:-../" + FOLDER + "/data/bench}")
    assert OUTSIDE_REFERENCE.search("ROOT.parent / '" + FOLDER + "' / 'data'")
    assert OUTSIDE_REFERENCE.search('Path(__file__).parents[2] / "' + FOLDER + '"')
    assert not OUTSIDE_REFERENCE.search("the one training step " + FOLDER + " by both trainers")


def test_no_tracked_file_reads_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        offenders += [
            f"{path.relative_to(REPO_ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            for match in OUTSIDE_REFERENCE.finditer(text)
        ]
    assert not offenders, "files that read outside the repository: " + ", ".join(offenders)


def test_documents_hold_no_placeholder_text() -> None:
    placeholder = re.compile(r"\b(FILL|TBD|TODO|XXX)\b")
    documents = [path for path in tracked_files() if path.suffix == ".md" and path.is_file()]
    assert any(path.name == "RESULTS.md" for path in documents)
    found = [
        f"{path.relative_to(REPO_ROOT)}: {match.group(0)}"
        for path in documents
        for match in placeholder.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found, "placeholder text: " + ", ".join(found)
