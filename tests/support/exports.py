"""Checking an unzipped export as its receiver would: ``recorder.verify`` and the hand
check VERIFYING.txt prints, on the export as made and with one byte flipped in each kind
of file it holds."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recorder.export import SCRIPT_END, SCRIPT_START, VERIFYING_NAME
from recorder.verify import main as verify_main
from tests.support.binaries import need_binary
from tests.support.server import ROOT

HAND_TOOLS = ("bash", "openssl", "jq", "sha256sum", "base64")


def hand_script(unzipped: Path) -> str:
    text = (unzipped / VERIFYING_NAME).read_text()
    return text.split(SCRIPT_START + "\n", 1)[1].split(SCRIPT_END, 1)[0]


def run_hand_script(unzipped: Path, script: str | None = None) -> str:
    """The hand check's output; ``script`` read from an untouched VERIFYING.txt when the
    one in ``unzipped`` may be the altered file."""
    result = subprocess.run(["bash", "-c", script or hand_script(unzipped)], cwd=unzipped,
                            capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def verify_dir(folder: Path, public_key: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
    """``python -m recorder.verify --dir`` as the receiver runs it."""
    extra = ["--public-key", str(public_key)] if public_key is not None else []
    return subprocess.run([sys.executable, "-m", "recorder.verify", "--dir", str(folder),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)


def flip_middle(path: Path) -> None:
    """Change one bit of the byte in the middle of a file, as silent tampering would."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def kinds(unzipped: Path) -> dict[str, Path]:
    """One file of each kind in an export: each file outside ``segments/`` and ``media/``,
    and the first segment and replay file."""
    found: dict[str, Path] = {}
    for path in sorted(p for p in unzipped.rglob("*") if p.is_file()):
        name = path.relative_to(unzipped).as_posix()
        top = name.split("/", 1)[0]
        found.setdefault(top if top in ("segments", "media") else name, path)
    return found


def check_intact(unzipped: Path, public_key: Path | None = None) -> str:
    """Assert that the export verifies both ways as made; return the hand check's script."""
    for tool in HAND_TOOLS:
        need_binary(tool)
    script = hand_script(unzipped)
    with ThreadPoolExecutor(2) as pool:  # two independent children: one core each
        hand = pool.submit(run_hand_script, unzipped, script)
        intact = verify_dir(unzipped, public_key)
        output = hand.result()
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "FAILED" not in output and "export-files: OK" in output, output
    return script


def check_every_flip_fails(unzipped: Path, scratch: Path, public_key: Path | None = None,
                           only: Collection[str] | None = None) -> set[str]:
    """Assert that the export verifies (both ways) as made, and that one flipped byte in
    any kind of file (of those in ``only``, when given) fails both; return every kind the
    export holds. The flipped copies are checked by the verifier's own entry point in this
    process: the same code the command runs, without a Python start per file. The hand
    check (a few processes per manifest line) runs on the copies side by side."""
    script = check_intact(unzipped, public_key)
    extra = ["--public-key", str(public_key)] if public_key is not None else []
    held = kinds(unzipped)
    flipped = {kind: path for kind, path in held.items() if only is None or kind in only}
    assert only is None or set(flipped) == set(only), (sorted(held), sorted(only))
    copies: dict[str, Path] = {}
    for number, (kind, path) in enumerate(flipped.items()):
        copy = copies[kind] = scratch / f"flipped-{number}"
        shutil.copytree(unzipped, copy)
        flip_middle(copy / path.relative_to(unzipped))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = verify_main(["--dir", str(copy), *extra])
        assert code == 1, (kind, printed.getvalue())
        assert "FAILED" in printed.getvalue(), (kind, printed.getvalue())
    with ThreadPoolExecutor(4) as pool:
        hand = {kind: pool.submit(run_hand_script, copy, script) for kind, copy in copies.items()}
        for kind, output in hand.items():
            assert "FAILED" in output.result(), kind
    for copy in copies.values():
        shutil.rmtree(copy)
    return set(held)
