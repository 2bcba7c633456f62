"""Every command line in README.md's ```sh blocks runs as written, after what ``python3 scripts/dev.py run`` sets up.

Each command runs with bash in a fresh copy of the checkout's top level (symlinks to it, with its own ``var/``:
``PROVENANCE_DATA_DIR``), with ``PROVENANCE_DEBUG=1``, the virtualenv's ``bin`` first on PATH (an activated
virtualenv, as the README says) and none of the caller's database, broker or secret settings. Before the commands,
that data directory gets what ``scripts/dev.py run`` gives it: a migrated database and the demo (``manage.py
demo``). A command's expected exit status is 0 unless its own text says ``exit status N``.

The one substitution: ``127.0.0.1:5000``, the README's local registry, becomes a real registry started by the test
suite, holding the demo fleet pushed there as ``demo/fleet`` with every tag (signatures included).

Skipped, each for a stated reason, and nothing else (a new README command is run or must be listed here):
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from provenance.core.ocilayout import OciLayout, push_layout
from tests.plugins.registry import RegistryServer
from tests.support import missing_component

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_REGISTRY = "127.0.0.1:5000"
SKIPPED = {
    "python3 scripts/dev.py run": "runs web, worker and beat until Ctrl-C (tests/test_run_command.py starts it)",
    "python3 scripts/dev.py test": "runs the whole test suite, this test included",
    "docker compose": "needs Docker and builds the image (tests/test_project.py checks the compose file)",
    "cat > .env <<ENV": "a heredoc that writes production secrets into .env in the checkout",
}
__doc__ += "".join(f"\n* ``{prefix}``: {reason}" for prefix, reason in SKIPPED.items())
_EXPECTED = re.compile(r"exit status (\d+)")


@dataclass(frozen=True)
class ReadmeCommand:
    text: str  # continuation lines joined, as bash reads it
    line: int  # where it starts in README.md

    @property
    def skipped_by(self) -> str | None:
        return next((prefix for prefix in SKIPPED if self.text.startswith(prefix)), None)

    @property
    def expected_status(self) -> int:
        match = _EXPECTED.search(self.text.split(" #", 1)[1] if " #" in self.text else "")
        return int(match.group(1)) if match else 0


def readme_commands(text: str) -> list[ReadmeCommand]:
    """The commands of every ```sh block: comment lines dropped, ``\\`` continuations joined, a heredoc taken as
    one command up to its terminator."""
    commands: list[ReadmeCommand] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```sh":
            index += 1
            continue
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            start, line = index, lines[index]
            index += 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [line]
            while parts[-1].endswith("\\") and index < len(lines):
                parts[-1] = parts[-1][:-1]
                parts.append(lines[index])
                index += 1
            heredoc = re.search(r"<<-?\s*'?(\w+)'?", line)
            if heredoc:
                while index < len(lines) and lines[index].strip() != heredoc.group(1):
                    parts.append(lines[index])
                    index += 1
                index += 1
            commands.append(ReadmeCommand(" ".join(p.strip() for p in parts), start + 1))
        index += 1
    return commands


COMMANDS = readme_commands(README.read_text())
RUN = [c for c in COMMANDS if c.skipped_by is None]


def test_readme_commands_are_found_and_only_the_listed_ones_are_skipped() -> None:
    assert {c.skipped_by for c in COMMANDS if c.skipped_by} == set(SKIPPED)
    assert any(c.text.startswith(".venv/bin/provenance verify ") for c in RUN)
    assert any(c.text.startswith("python manage.py ") for c in RUN)
    assert any(c.expected_status == 1 for c in RUN)  # an example that shows a failing check on purpose


def test_the_extractor_joins_continuations_and_reads_expected_status() -> None:
    text = "x\n```sh\n# note\na \\\n    b   # fails: exit status 1\nc <<EOF\nbody\nEOF\n```\n```python\nnot sh\n```\n"

    commands = readme_commands(text)

    assert [(c.text, c.line, c.expected_status) for c in commands] == [
        ("a b   # fails: exit status 1", 4, 1), ("c <<EOF body", 6, 0)]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer) -> tuple[Path, dict[str, str]]:
    """A directory that looks like the checkout after ``scripts/dev.py run``, and the environment to run in."""
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "provenance").exists():
        missing_component("the provenance console script is not installed: run python3 scripts/dev.py venv")
    workdir = tmp_path_factory.mktemp("checkout")
    for entry in ROOT.iterdir():
        if entry.name not in {"var", ".git"}:
            (workdir / entry.name).symlink_to(entry)
    dropped = ("DATABASE_URL", "SECRET_KEY", "DJANGO_", "PROVENANCE_", "CELERY_", "COSIGN_", "SIGSTORE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update({
        "HOME": str(workdir),
        "PATH": f"{workdir / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(workdir / ".venv"),
        "PROVENANCE_DATA_DIR": str(workdir / "var"),
        "PROVENANCE_DEBUG": "1",
    })
    for args in (["migrate", "--no-input", "--verbosity", "0"], ["demo"]):
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    with registry.client() as client:
        pushed = push_layout(OciLayout(workdir / "var" / "demo" / "demo-fleet"), client, "demo/fleet")
    assert "signed" in pushed and any(tag.endswith(".sig") for tag in pushed)
    return workdir, env


@pytest.mark.parametrize("command", RUN, ids=[f"README.md:{c.line}" for c in RUN])
def test_readme_command_runs_as_written(command: ReadmeCommand, checkout: tuple[Path, dict[str, str]],
                                       registry: RegistryServer) -> None:
    workdir, env = checkout
    script = command.text.replace(README_REGISTRY, registry.host)

    done = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == command.expected_status, (
        f"README.md line {command.line}: {command.text}\nexit status {done.returncode}, expected "
        f"{command.expected_status}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    )
    assert "Traceback" not in done.stderr
