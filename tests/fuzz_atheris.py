"""Coverage-guided fuzzing of the decoders with atheris: ``make fuzz``.

Run by hand from the repository root::

    python -m tests.fuzz_atheris -max_total_time=60            # what make fuzz does
    python -m tests.fuzz_atheris build/fuzz/findings/crash-...  # replay one finding

The corpus (``build/fuzz/corpus``) is seeded with every metadata image of the
``service-a`` and ``service-old`` fixtures (see :mod:`tests.fuzz_target` for
the input layout).  A finding is written to ``build/fuzz/findings/``; to keep
it as a regular test, copy it into ``tests/fuzz_findings/`` under a name that
says what it is (``<kind>-<what>.bin``): ``tests/test_fuzz_regressions.py``
replays every file there.  Fix the bug before committing it.
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["decoders", "crit_plus"]):
    from tests.fuzz_target import NAMES, input_for, one_input

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "fuzz"
SEED_FIXTURES = ("service-a", "service-old")


def seed(corpus):
    """Put one input per metadata image of the seed fixtures into ``corpus`` (if empty)."""
    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    from decoders.kinds import expected_magic, split_name

    by_kind = {}
    for name in NAMES:
        by_kind.setdefault(expected_magic(name), name)
    with tempfile.TemporaryDirectory() as unpacked:
        for fixture in SEED_FIXTURES:
            with tarfile.open(ROOT / "fixtures" / f"{fixture}.tar.gz") as archive:
                archive.extractall(unpacked, filter="data")
        for path in sorted(Path(unpacked).rglob("*")):
            kind = expected_magic(path.name) if path.is_file() else None
            target = by_kind.get(kind)
            if split_name(path.name)[0] == "pagemap-shmem":
                target = "pagemap-shmem-1.img"
            if target is not None:
                data = input_for(target, path.read_bytes())
                (corpus / f"{path.parent.name}-{path.name}").write_bytes(data)


def main():
    """Seed the corpus, then fuzz (libFuzzer flags such as -max_total_time pass through)."""
    scratch = BUILD / "scratch"  # one image at a time is written here
    scratch.mkdir(parents=True, exist_ok=True)
    args = list(sys.argv)
    replay = any(os.path.isfile(arg) for arg in args[1:])
    if not replay:
        corpus = BUILD / "corpus"
        findings = BUILD / "findings"
        seed(corpus)
        findings.mkdir(parents=True, exist_ok=True)
        args += [f"-artifact_prefix={findings}/", str(corpus)]

    def test_one(data):
        one_input(data, scratch)

    atheris.Setup(args, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
