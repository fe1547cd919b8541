"""The documentation is true: every fenced example of README.md and docs/*.md runs, or is checked as
the file or command it names, and links resolve.

* Every relative link (and image) points at a file or folder of the checkout, and every ``#anchor`` at a
  heading of the page it names (GitHub's anchor rules).
* Every fenced block names its language, which decides how it is checked. A block that must not run
  says so right above it, visibly: ``<!-- docs-test: skip (reason) -->``; one that needs Cassandra says
  ``<!-- docs-test: needs cassandra -->`` and runs when ``CASSANDRA_CONTACT_POINTS`` is set.
* ``sh``/``bash``/``console`` blocks of every page run for real, in page order (README first), in a
  folder that holds ``examples/`` and the data dir ``data/``: the first server command starts the real
  service (waitress) on a free 127.0.0.1 port, ``curl`` examples are sent to it, ``<id>`` and
  ``<next_cursor>`` become a real record id and cursor, ``digitrec`` runs this checkout. Where a page
  shows output (``console`` blocks), the real output must match it (same keys and labels; timings, ids
  and times only by their form; probabilities within 0.05). Checked instead of run: install, test and
  benchmark commands (the README's against ``.ci/run``; elsewhere the test files, markers, scripts and
  options they name), later server commands (their arguments must parse), ``docker`` commands (compose
  files, services, volumes, keyspace and columns; CI has no Docker engine) and ``kubectl`` commands
  (the Kubernetes objects in container/k8s/).
* Every ``digitrec`` option named in any shell block, synopses and skipped blocks included, is one the
  command takes; ``json`` blocks parse; the compose and Kubernetes files are valid.
* Every ``python`` block runs (one interpreter, a fresh namespace per block, in a scratch folder that
  holds ``examples/``, which it must leave as it was); a ``text`` block right after a Python block is
  its expected output. ``sql`` blocks are CQL: they run against Cassandra when it is configured.
* The sample images in examples/ are small and the shipped models recognise each one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from processes import stop_process

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = ("sh", "bash", "shell", "console")
# What a fenced block may be; each kind is checked its own way (see the module docstring).
KNOWN_LANGS = {*SHELL_LANGS, "python", "text", "json", "sql", "yaml", "ini", "html", "csv"}
SERVER_PLACEHOLDERS = ("127.0.0.1:5000", "localhost:5000")
SAMPLES = {  # file -> (model, expected class name, or for "read" the number read)
    "seven.png": ("digits", "7"),
    "four-on-paper.jpg": ("digits", "4"),
    "ankle-boot.jpg": ("fashion", "Ankle boot"),
    "number-on-paper.jpg": ("read", "2026"),
}


# --- reading Markdown -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip_reason: str | None  # from <!-- docs-test: skip (reason) --> right above
    needs_cassandra: bool = False  # <!-- docs-test: needs cassandra --> right above: runs when one is configured
    expected: str | None = None  # a ```text block right after a python block

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((.+?)\)\s*-->")
NEEDS_CASSANDRA = re.compile(r"<!--\s*docs-test:\s*needs cassandra\s*-->")


def fenced_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    gaps: list[list[str]] = [[]]  # the lines between blocks, to find skip comments and output blocks
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            gaps[-1].append(lines[i])
            i += 1
            continue
        fence, lang = match.group(1), match.group(2).lower()
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        before = [line for line in gaps[-1] if line.strip()]
        skip = SKIP.search(before[-1]) if before else None
        cassandra = bool(before and NEEDS_CASSANDRA.search(before[-1]))
        block = Block(page, start + 1, lang, "\n".join(body) + "\n", skip.group(1) if skip else None, cassandra)
        if lang == "text" and blocks and blocks[-1].lang == "python" and len(before) <= 1:
            blocks[-1].expected = block.text
        blocks.append(block)
        gaps.append([])
    return blocks


def strip_code(text: str) -> str:
    """The Markdown without fenced blocks and inline code, where links are not links."""
    text = re.sub(r"^(```+|~~~+).*?^\1\s*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def links(page: Path) -> list[str]:
    return LINK.findall(strip_code(page.read_text(encoding="utf-8")))


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for line in strip_code(page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


# --- links ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    problems = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        rel = resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else str(resolved)
        if not resolved.exists():
            problems.append(f"{target} -> {rel} does not exist")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {rel}")
    assert not problems, f"broken links in {page.relative_to(REPO)}:\n" + "\n".join(problems)


def test_link_checker_catches_a_broken_link_and_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A title\n\n[ok](#a-title) [bad](#nope) [file](missing.md)\n`[not](code.md)`\n")
    assert links(page) == ["#a-title", "#nope", "missing.md"]
    assert anchors(page) == {"a-title"}


def test_readme_is_a_short_newcomer_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 12_000, f"README.md is {len(text.encode())} bytes; move reference into docs/"
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README's map of the docs does not link docs/{page.name}"


# --- the sample images -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_image_is_small_and_recognised(name: str, digits_model, fashion_model) -> None:
    path = REPO / "examples" / name
    assert path.stat().st_size < 8_000, f"{name} is {path.stat().st_size} bytes; samples stay a few KB"
    model, expected = SAMPLES[name]
    if model == "read":
        reading = digits_model.read(path)
        assert reading.text == expected and not reading.refused, f"{name}: read as {reading.text!r}"
        return
    prediction = {"digits": digits_model, "fashion": fashion_model}[model].predict(path)
    assert prediction.name == expected, f"{name}: {model} says {prediction.name} ({prediction.confidence:.3f})"
    assert prediction.confidence > 0.5


@pytest.mark.slow
def test_make_samples_regenerates_the_shipped_images(tmp_path: Path, data_dir: Path) -> None:
    import cv2
    import numpy as np

    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "make_samples.py"), "--datasets", str(data_dir), "--out", tmp_path],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for name in SAMPLES:
        shipped = cv2.imread(str(REPO / "examples" / name), cv2.IMREAD_UNCHANGED).astype(np.int16)
        fresh = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED).astype(np.int16)
        assert shipped.shape == fresh.shape, name
        assert np.abs(shipped - fresh).mean() < 1.0, f"{name} differs from what make_samples.py makes"


# --- what every page must get right -----------------------------------------------------------------------

SERVICE_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(\d+)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_service_urls_use_the_default_port(page: Path) -> None:
    """Every example talks to the service where `python webservice.py` serves: port 5000."""
    text = page.read_text(encoding="utf-8")
    others = sorted({m.group(0) for m in SERVICE_URL.finditer(text) if m.group(1) != "5000"})
    assert not others, f"{page.relative_to(REPO)} uses {others}; the service's default is 127.0.0.1:5000"


def curl_requests(block: Block) -> list[tuple[str, ...]]:
    """What each curl line of a block asks for: its URL and request options, without output file names."""
    found = []
    for command in shell_commands(block):
        argv = shlex.split(command.text, comments=True)
        if argv and argv[0] == "curl":
            kept, skip_next = [], False
            for arg in argv[1:]:
                if skip_next:
                    skip_next = False
                elif arg in ("-o", "--output"):
                    skip_next = True
                else:
                    kept.append(arg)
            found.append(tuple(kept))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_request_is_shown_twice_in_one_example(page: Path) -> None:
    for block in fenced_blocks(page):
        if block.lang not in ("sh", "bash", "shell", "console"):
            continue
        requests = curl_requests(block)
        twice = sorted({r for r in requests if requests.count(r) > 1})
        assert not twice, f"{block.where} shows the same request twice: {twice}"


def test_a_virtualenv_in_the_checkout_is_ignored() -> None:
    """The README creates .venv in the checkout; git must not offer it for a commit."""
    for name in (".venv", ".venv/bin/python"):
        result = subprocess.run(["git", "check-ignore", "-q", name], cwd=REPO, check=False)
        assert result.returncode == 0, f"{name} is not ignored by .gitignore"


# --- comparing shown output with real output -----------------------------------------------------------------

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?%?")


def compare_json(shown: object, real: object, path: str = "$") -> list[str]:
    """What the README shows must be in the real answer: every key, equal labels and names; ids, times
    and timings by their form; probabilities within 0.05; a string with '…' by its beginning."""
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            return [f"{path}: shown an object, got {real!r}"]
        problems = [f"{path}: shown key {key!r} is not in the reply" for key in shown if key not in real]
        for key in shown.keys() & real.keys():
            problems += compare_json(shown[key], real[key], f"{path}.{key}")
        return problems
    if isinstance(shown, list):
        if not isinstance(real, list) or len(real) != len(shown):
            return [f"{path}: shown {len(shown)} items, got {real!r}"]
        return [p for i, (s, r) in enumerate(zip(shown, real)) for p in compare_json(s, r, f"{path}[{i}]")]
    if isinstance(shown, bool) or shown is None or isinstance(shown, int):
        return [] if shown == real and type(shown) is type(real) else [f"{path}: shown {shown!r}, got {real!r}"]
    if isinstance(shown, float):
        if not isinstance(real, (int, float)) or isinstance(real, bool):
            return [f"{path}: shown a number, got {real!r}"]
        if shown <= 1.0 and abs(real - shown) > 0.05:  # a probability
            return [f"{path}: shown {shown}, got {real}"]
        return [] if real >= 0 else [f"{path}: got a negative time {real}"]
    assert isinstance(shown, str)
    if not isinstance(real, str):
        return [f"{path}: shown a string, got {real!r}"]
    if "…" in shown:
        return [] if real.startswith(shown.split("…")[0]) else [f"{path}: shown {shown!r}, got {real!r}"]
    if ISO_TIME.match(shown):
        return [] if ISO_TIME.match(real) else [f"{path}: shown a time, got {real!r}"]
    if UUID.sub("<id>", shown) != UUID.sub("<id>", real):
        return [f"{path}: shown {shown!r}, got {real!r}"]
    return []


def compare_text(shown: str, real: str) -> list[str]:
    """Line by line; percentages within 5 points, probabilities within 0.05, other numbers equal; a line
    with '…' by its start (calibrating the confidence may move it a little; labels must not change)."""
    shown_lines, real_lines = shown.strip().splitlines(), real.strip().splitlines()
    if len(shown_lines) != len(real_lines):
        return [f"shown {len(shown_lines)} lines, got {len(real_lines)}:\n{real}"]
    problems = []
    for s, r in zip(shown_lines, real_lines):
        if "…" in s:
            if not r.startswith(s.split("…")[0]):
                problems.append(f"shown {s!r}, got {r!r}")
            continue
        if re.sub(r" +", " ", NUMBER.sub("#", s)) != re.sub(r" +", " ", NUMBER.sub("#", r)):  # columns may widen
            problems.append(f"shown {s!r}, got {r!r}")
            continue
        for a, b in zip(NUMBER.findall(s), NUMBER.findall(r)):
            if a.endswith("%") and b.endswith("%"):
                if abs(float(a[:-1]) - float(b[:-1])) > 5.0:
                    problems.append(f"shown {s!r}, got {r!r}")
            elif "." in a and "." in b and float(a) <= 1.0:  # a probability
                if abs(float(a) - float(b)) > 0.05:
                    problems.append(f"shown {s!r}, got {r!r}")
            elif a != b:
                problems.append(f"shown {s!r}, got {r!r}")
    return problems


def compare_output(shown: str, real: str) -> list[str]:
    """A JSON document (compared as JSON) and any text after it (such as curl's ``-w`` line), or text."""
    if not shown.lstrip().startswith(("{", "[")):
        return compare_text(shown, real)
    decoder = json.JSONDecoder()
    shown_json, end = decoder.raw_decode(shown.strip())
    try:
        real_json, real_end = decoder.raw_decode(real.strip())
    except ValueError:
        return [f"shown JSON, got {real[:300]!r}"]
    problems = compare_json(shown_json, real_json)
    return problems + compare_text(shown.strip()[end:], real.strip()[real_end:])


def test_install_and_test_commands_are_never_run() -> None:
    assert is_install_or_test(shlex.split('pip install -e ".[test]"'))
    assert is_install_or_test(shlex.split(".venv/bin/python -m pip install -e ."))
    assert is_install_or_test(shlex.split("python -m pytest -m 'not browser'"))
    assert not is_install_or_test(shlex.split("python webservice.py"))
    assert not is_install_or_test(shlex.split("curl http://127.0.0.1:5000/healthz"))
    assert simple_commands('apt-get update && pip install -e "a|b;c" | tee x; ls # c') == [
        ["apt-get", "update"],
        ["pip", "install", "-e", "a|b;c"],
        ["tee", "x"],
        ["ls"],
    ]


def test_output_comparison_catches_drift() -> None:
    shown = {"id": "758dde6d-edda-11f1-a3c8-f1405188ee8f", "label": 7, "confidence": 0.96, "elapsed_ms": 5.1}
    real = {"id": "00000000-edda-11f1-a3c8-f1405188ee8f", "label": 7, "confidence": 0.97, "elapsed_ms": 80.0}
    assert compare_json(shown, real) == []
    assert compare_json(shown, {**real, "label": 1})
    assert compare_json(shown, {**real, "confidence": 0.5})
    assert compare_json(shown, {k: v for k, v in real.items() if k != "id"})
    assert compare_text("a.png: 7 (96.4%)", "a.png: 7 (97.9%)") == []
    assert compare_text("a.png: 7 (96.4%)", "a.png: 1 (96.4%)")
    assert compare_text("4 4 0.94", "4 4 0.96") == []
    assert compare_text("4 4 0.94", "4 4 0.80")
    assert compare_output('{"label": 7}\nHTTP 207\n', '{"label": 7, "x": 1}\nHTTP 207\n') == []
    assert compare_output('{"label": 7}\nHTTP 207\n', '{"label": 7}\nHTTP 200\n')
    assert compare_text("a.png: 7 (96.4%)", "a.png: 7 (96.4%)\nb.png: 4 (94.0%)")


# --- the README's shell examples ---------------------------------------------------------------------------


@dataclasses.dataclass
class Command:
    text: str  # as written (continuation lines joined)
    shown: str | None  # output shown under it (console blocks)
    where: str


def complete(text: str) -> bool:
    """False while a quote is still open (the command goes on over the next line)."""
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def shell_commands(block: Block) -> list[Command]:
    """``sh``/``bash``: every line is a command; ``console``: ``$ `` lines are, the rest is their output."""
    commands: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        console = block.lang == "console"
        if console and not line.startswith("$ "):
            if commands and commands[-1].shown is not None:
                commands[-1].shown += line + "\n"
            i += 1
            continue
        text = line[2:] if console else line
        i += 1
        while i < len(lines) and (text.rstrip().endswith("\\") or not complete(text)):
            if text.rstrip().endswith("\\"):
                text = text.rstrip()[:-1] + " " + lines[i].strip()
            else:  # a quoted string that goes on over the next line
                text += "\n" + lines[i]
            i += 1
        if text.strip() and not text.lstrip().startswith("#"):
            commands.append(Command(text.strip(), "" if console else None, f"{block.where}"))
    for command in commands:
        if command.shown is not None and not command.shown.strip():
            command.shown = None
    return commands


def normalised(argv: list[str]) -> list[str]:
    """``.venv/bin/python -m pip`` -> ``pip``, ``/x/bin/python`` -> ``python``."""
    argv = [os.path.basename(argv[0]), *argv[1:]] if argv else argv
    if argv[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
        argv = ["pip", *argv[3:]]
    return argv


def ci_commands() -> list[list[str]]:
    text = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    found = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;", line):
            try:
                argv = shlex.split(part, comments=True)
            except ValueError:
                continue
            if argv:
                found.append(normalised(argv))
    return found


def simple_commands(text: str) -> list[list[str]]:
    """``a && b | c; d`` -> the argv of a, b, c and d (quotes respected)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set("&|;()"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [argv for argv in commands if argv]


def without_env(argv: list[str]) -> list[str]:
    """``CASSANDRA_CONTACT_POINTS=127.0.0.1 python -m pytest`` -> ``python -m pytest``."""
    i = 0
    while i < len(argv) and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", argv[i]):
        i += 1
    return argv[i:]


def is_install_or_test(argv: list[str]) -> bool:
    """Installing (pip, apt-get), running the suite or the linter: checked for shape, never run from
    inside the suite (that would recurse, and install into the machine)."""
    norm = normalised(without_env(argv))
    return bool(norm) and (
        norm[0] in ("pip", "pip3", "pytest", "apt-get", "apt", "sudo", "ruff")
        or norm[:3] == ["python", "-m", "pytest"]
        or (norm[0] == "python" and len(norm) > 1 and norm[1].startswith("benchmarks/"))  # minutes of load
    )


def pytest_markers() -> set[str]:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    return set(re.findall(r'^\s*"(\w+):', text.split("markers", 1)[1], re.M))


def check_test_shape(command: Command) -> None:
    """The README's install and test commands are exactly what .ci/run runs; elsewhere a pytest command
    names test files that exist and markers that are declared, and pip installs an extra setup.py has."""
    if command.where.startswith("README.md"):
        check_ci_shape(command)
        return
    for argv in simple_commands(command.text):
        argv = normalised(without_env(argv))
        if argv[:2] == ["pip", "install"]:
            extra = re.fullmatch(r"\.\[(\w+)\]", argv[-1])
            assert extra and f'"{extra.group(1)}":' in (REPO / "setup.py").read_text(), f"{command.where}: {argv}"
        if argv[:1] == ["python"] and argv[1].startswith("benchmarks/"):
            script = REPO / argv[1]
            assert script.is_file(), f"{command.where}: no {argv[1]}"
            for option in re.findall(r"--[\w-]+", " ".join(argv[2:])):
                assert f'"{option}"' in script.read_text(), f"{command.where}: {argv[1]} has no {option}"
        if argv[:3] == ["python", "-m", "pytest"] or argv[:1] == ["pytest"]:
            start = argv.index("pytest") + 1
            for i, arg in enumerate(argv[start:], start):
                if arg.startswith("tests/"):
                    assert (REPO / arg.split("::")[0]).exists(), f"{command.where}: no {arg}"
                if argv[i - 1] == "-m":
                    words = set(re.findall(r"\w+", arg)) - {"not", "and", "or"}
                    assert words <= pytest_markers(), (
                        f"{command.where}: undeclared marker(s) {words - pytest_markers()}"
                    )


def check_ci_shape(command: Command) -> None:
    argv = normalised(shlex.split(command.text, comments=True))
    assert argv in ci_commands(), f"{command.where}: `{command.text}` is not what .ci/run runs"
    if argv[:2] == ["pip", "install"]:
        target = argv[-1]
        extra = re.fullmatch(r"\.\[(\w+)\]", target)
        assert extra, f"{command.where}: installs {target!r}, expected the checkout with an extra"
        assert f'"{extra.group(1)}":' in (REPO / "setup.py").read_text(), f"setup.py has no extra {extra.group(1)}"


def compose_services(compose_file: Path) -> dict:
    import yaml

    return yaml.safe_load(compose_file.read_text(encoding="utf-8"))["services"]


def compose_volumes() -> set[str]:
    import yaml

    found: set[str] = set()
    for compose_file in (REPO / "container").glob("docker-compose*.yml"):
        found |= set(yaml.safe_load(compose_file.read_text(encoding="utf-8")).get("volumes") or {})
    return found


VALUE_OPTIONS = {"-s", "--signal", "--scale", "--tail", "-n", "-t", "--timeout", "-e", "--env", "-u", "--user"}


def check_docker(command: Command) -> None:
    """No Docker engine in CI: the command must name files, services, volumes, keyspace and columns that
    exist (``docker compose -f FILE VERB [SERVICE...]``, ``docker run -v VOLUME:...``)."""
    for argv in simple_commands(command.text):
        argv = without_env(argv)
        if argv[0] != "docker":
            continue
        if argv[1] == "run":
            for i, arg in enumerate(argv):
                if argv[i - 1] == "-v" and not arg.startswith(("/", "$", ".")):
                    volume = arg.split(":", 1)[0]
                    assert volume in compose_volumes(), f"{command.where}: no volume {volume!r} in the compose files"
            continue
        assert argv[1] == "compose", f"{command.where}: `docker {argv[1]}` is not an expected example"
        assert "-f" in argv, f"{command.where}: name the compose file with -f"
        compose_file = REPO / argv[argv.index("-f") + 1]
        assert compose_file.is_file(), f"{command.where}: {compose_file} does not exist"
        services = compose_services(compose_file)
        rest = argv[argv.index("-f") + 2 :]
        while rest and rest[0] == "-f":  # more compose files (overrides)
            assert (REPO / rest[1]).is_file(), f"{command.where}: {rest[1]} does not exist"
            services = {**services, **compose_services(REPO / rest[1])}
            rest = rest[2:]
        verb, args = rest[0], rest[1:]
        known = {"up", "ps", "exec", "logs", "stop", "start", "down", "run", "restart", "build", "pull", "kill"}
        assert verb in known, f"{command.where}: unexpected `docker compose {verb}`"
        positional = [
            a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in VALUE_OPTIONS)
        ]
        if verb in {"exec", "run"}:
            service = positional[0]
            assert service in services, f"{command.where}: no service {service!r} in {compose_file.name}"
            if "cqlsh" in args and "-e" in args[args.index("cqlsh") :]:
                check_cql(args[args.index("-e", args.index("cqlsh")) + 1], services, command.where)
        elif verb in {"logs", "stop", "start", "restart", "kill", "up"} and positional:
            assert set(positional) <= set(services), f"{command.where}: unknown service in {positional}"


def kubernetes_objects(path: Path) -> list[dict]:
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def check_kubectl(command: Command) -> None:
    """No cluster in CI: ``kubectl apply -f FILE`` names a file of Kubernetes objects, ``kubectl scale
    deployment/NAME`` a Deployment in container/k8s/."""
    argv = without_env(shlex.split(command.text, comments=True))
    if argv[1] == "apply":
        path = REPO / argv[argv.index("-f") + 1]
        assert path.is_file(), f"{command.where}: {path} does not exist"
        for doc in kubernetes_objects(path):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{command.where}: {path.name}: {doc}"
    elif argv[1] == "scale":
        kind, name = argv[2].split("/")
        kinds = {
            (doc["kind"].lower(), doc["metadata"]["name"])
            for path in (REPO / "container" / "k8s").glob("*.yaml")
            for doc in kubernetes_objects(path)
        }
        assert (kind.lower(), name) in kinds, f"{command.where}: no {argv[2]} in container/k8s/"
    else:
        raise AssertionError(f"{command.where}: unexpected `kubectl {argv[1]}`")


def check_server_arguments(command: Command) -> None:
    """A server command after the one that started the docs' service: its arguments must parse."""
    from digitrec.cli import build_parser
    from digitrec.service.cli import add_arguments

    argv = without_env(shlex.split(command.text, comments=True))
    if argv[0] == "digitrec":
        parser, args = build_parser(), argv[1:]
    else:
        parser, args = argparse.ArgumentParser(prog="webservice.py"), argv[2:]
        add_arguments(parser)
    parser.exit = lambda status=0, message=None: pytest.fail(f"{command.where}: `{command.text}`: {message}")
    parser.parse_args(args)


def check_cql(query: str, services: dict, where: str) -> None:
    from digitrec.records.record import PredictionRecord

    app_env = services["app"].get("environment", {})
    keyspace = app_env.get("CASSANDRA_KEYSPACE", "digitrecognition")
    table = app_env.get("CASSANDRA_TABLE", "dr_request_log")
    altered = re.match(r"ALTER KEYSPACE (\w+) WITH replication = \{.+\}$", query, re.I)
    if altered:
        assert altered.group(1) == keyspace, f"{where}: the app's keyspace is {keyspace}"
        return
    match = re.match(r"SELECT (.+?) FROM (\w+)\.(\w+)", query, re.I)
    assert match, f"{where}: cannot read the query {query!r}"
    columns = [c.strip() for c in match.group(1).split(",")]
    assert (match.group(2), match.group(3)) == (keyspace, table), f"{where}: the app writes {keyspace}.{table}"
    known = {f.name for f in dataclasses.fields(PredictionRecord)} | {"day", "*"}
    assert set(columns) <= known, f"{where}: no such column(s) {set(columns) - known}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def program_env(bin_dir: Path | None = None) -> dict[str, str]:
    """This checkout on PYTHONPATH, ``bin_dir`` (a ``digitrec`` that runs this checkout) and this
    interpreter's scripts first on PATH, SQLite records (CASSANDRA_* removed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSANDRA_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    first = [str(bin_dir)] if bin_dir else []
    env["PATH"] = os.pathsep.join([*first, str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


class Service:
    """The README's server command, really started, on a free port and a temporary data dir."""

    def __init__(self, argv: list[str], data_dir: Path) -> None:
        self.port = free_port()
        program = (
            [sys.executable, "webservice.py"]
            if argv[0].startswith("python")
            else [sys.executable, "-m", "digitrec", "serve"]
        )
        extra = argv[2:]
        self.log = data_dir.parent / "service.log"
        self.proc = subprocess.Popen(
            [*program, *extra, "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(data_dir)],
            cwd=REPO,
            env=program_env(),
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"`{' '.join(argv)}` exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"`{' '.join(argv)}` was not ready within 180 s:\n{self.log.read_text()}")

    def stop(self) -> None:
        stop_process(self.proc)


def newest_record(port: int) -> tuple[str, str]:
    """The newest record's id and the cursor after it, for examples that show ``<id>``, ``<next_cursor>``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/records?limit=1", timeout=30) as reply:
        page = json.load(reply)
    return page["records"][0]["request_id"], page["next_cursor"]


def run_shell(command: Command, port: int | None, workdir: Path) -> str:
    text = command.text.replace("--data-dir /data", f"--data-dir {workdir / 'data'}")  # the container's volume
    assert not any(is_install_or_test(argv) for argv in simple_commands(text)), (
        f"{command.where}: `{text}` installs or tests; such commands belong on a line of their own"
    )
    if "5000" in text:
        assert port is not None, f"{command.where}: `{text}` needs the server, but no server command came first"
        for placeholder in SERVER_PLACEHOLDERS:
            text = text.replace(placeholder, f"127.0.0.1:{port}")
    if "<id>" in text or "<next_cursor>" in text:
        request_id, cursor = newest_record(port)
        text = text.replace("<id>", request_id).replace("<next_cursor>", cursor)
    if shlex.split(text)[0] == "curl":  # an HTTP error must fail the example, not print a JSON error
        text = "curl --silent --show-error --fail-with-body" + text[len("curl") :]
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + text],
        cwd=workdir,
        env={**program_env(workdir / "bin"), "TOKEN": "unused-on-an-open-service"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{command.where}: `{command.text}` exited with {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def page_shell_commands(page: Path) -> list[Command]:
    blocks = [b for b in fenced_blocks(page) if b.lang in SHELL_LANGS]
    return [command for block in blocks if not block.skip_reason for command in shell_commands(block)]


def prepare_models(data_dir: Path) -> None:
    """The second digits version docs/models.md lists, promotes and rolls back (a copy of the shipped one)."""
    from model_versions import make_version
    from service_helpers import require_models

    make_version(require_models(), data_dir / "trained_models", "2026-12-01-231500", metadata={"parent": "2026-11-21"})


@pytest.mark.slow
def test_shell_examples_run(tmp_path: Path) -> None:
    """Every shell example of every page, in page order (README first), against one service."""
    commands = [command for page in PAGES for command in page_shell_commands(page)]
    assert commands, "README.md has no shell examples"
    workdir = tmp_path / "work"
    data_dir = workdir / "data"  # where `digitrec ...` looks by default, run from workdir
    data_dir.mkdir(parents=True)
    prepare_models(data_dir)
    (workdir / "examples").symlink_to(REPO / "examples")  # files the examples write land in tmp_path
    # `digitrec` runs this checkout (python -m digitrec), whatever console script is installed
    (workdir / "bin").mkdir()
    shim = workdir / "bin" / "digitrec"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m digitrec "$@"\n')
    shim.chmod(0o755)
    service: Service | None = None
    ran = []
    try:
        for command in commands:
            argv = without_env(shlex.split(command.text, comments=True))
            if all(is_install_or_test(a) for a in simple_commands(command.text)):
                check_test_shape(command)
            elif argv[:2] in (["python", "webservice.py"], ["digitrec", "serve"]):
                if service is None:
                    service = Service(argv, data_dir)
                else:  # one service for every example; later server commands are checked by parsing
                    check_server_arguments(command)
            elif argv[0] == "docker":
                check_docker(command)
            elif argv[0] == "kubectl":
                check_kubectl(command)
            else:
                real = run_shell(command, service.port if service else None, workdir)
                if command.shown is not None:
                    problems = compare_output(command.shown, real)
                    assert not problems, f"{command.where}: `{command.text}` output differs:\n" + "\n".join(problems)
            ran.append(command.text)
        assert any(c.startswith("curl") for c in ran) and service is not None, "no curl example against the service"
        assert newest_record(service.port)[0], "the examples wrote no record"
    finally:
        if service is not None:
            service.stop()
    assert (workdir / "input.png").read_bytes().startswith(b"\x89PNG"), "docs/api.md's stored image example"


# --- Python examples ---------------------------------------------------------------------------------------

RUNNER = r"""
import contextlib, io, json, sys, traceback
results = []
for code in json.load(sys.stdin):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "<example>", "exec"), {"__name__": "__example__"})
        results.append({"ok": True, "stdout": out.getvalue()})
    except BaseException:
        results.append({"ok": False, "stdout": out.getvalue(), "error": traceback.format_exc()})
print("\n@@RESULTS@@" + json.dumps(results))
"""


def python_blocks() -> list[Block]:
    return [block for page in PAGES for block in fenced_blocks(page) if block.lang == "python"]


@pytest.mark.slow
def test_python_examples_run(tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(REPO / "examples")  # files the examples write land in tmp_path
    blocks = [b for b in python_blocks() if not b.skip_reason and not b.needs_cassandra]
    assert any(b.page == README for b in blocks), "README.md has no Python example"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([b.text for b in blocks]),
        cwd=tmp_path,
        env=program_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "@@RESULTS@@" in result.stdout, result.stdout + result.stderr
    outcomes = json.loads(result.stdout.rsplit("@@RESULTS@@", 1)[1])
    problems = []
    for block, outcome in zip(blocks, outcomes):
        if not outcome["ok"]:
            problems.append(f"{block.where} raised:\n{outcome['error']}")
        elif block.expected is not None:
            problems += [f"{block.where}: {p}" for p in compare_text(block.expected, outcome["stdout"])]
    assert not problems, "\n".join(problems)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "examples")
    assert not left, f"examples wrote {left} into the folder they ran in (a user's checkout)"


def test_skipped_python_examples_say_why() -> None:
    for block in python_blocks():
        if block.skip_reason is not None:
            assert len(block.skip_reason) > 10, f"{block.where}: give the reason an example cannot run"


# --- every other kind of block -------------------------------------------------------------------------------


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in fenced_blocks(page)]


def test_every_fenced_block_says_what_it_is() -> None:
    """The language after the fence decides how the block is checked: a block without one is not checked."""
    unknown = [f"{b.where} ({b.lang or 'no language'})" for b in all_blocks() if b.lang not in KNOWN_LANGS]
    assert not unknown, "fenced blocks without a known language:\n" + "\n".join(unknown)


def test_json_examples_parse() -> None:
    broken = []
    for block in all_blocks():
        if block.lang == "json" and not block.skip_reason:
            try:
                json.loads(block.text)
            except ValueError as exc:
                broken.append(f"{block.where}: {exc}")
    assert not broken, "\n".join(broken)


def digitrec_lines(block: Block) -> list[list[str]]:
    """The argv of every `digitrec ...` command in a shell block (also in skipped blocks and synopses)."""
    found = []
    for command in shell_commands(block):
        text = re.sub(r"\[([^\]]*)\]", r"\1", command.text)  # a synopsis' [--option N] is still an option
        for argv in simple_commands(text.replace("|", " ")):
            argv = without_env(argv)
            if argv and argv[0] == "digitrec":
                found.append(argv)
    return found


def options_of(parser: argparse.ArgumentParser, words: list[str]) -> tuple[str, set[str]]:
    """The subcommand ``words`` lead to, and the options it (and its parents) accept."""
    path, options = [], {o for a in parser._actions for o in a.option_strings}
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
        path.append(word)
        options |= {o for a in parser._actions for o in a.option_strings}
    return " ".join(path), options


def test_every_digitrec_option_in_the_docs_exists() -> None:
    """Runnable or not (synopses, long trainings), a documented option must be one the command takes."""
    from digitrec.cli import build_parser

    parser = build_parser()
    wrong = []
    for block in all_blocks():
        if block.lang not in SHELL_LANGS:
            continue
        for argv in digitrec_lines(block):
            command, options = options_of(parser, argv[1:])
            if command == "train" and "--from-records" in argv:  # the alias takes finetune's options
                options |= options_of(parser, ["finetune"])[1]
            named = {a.split("=")[0] for a in argv[1:] if a.startswith("--")}
            wrong += [f"{block.where}: `digitrec {command}` has no {o}" for o in sorted(named - options)]
    assert not wrong, "\n".join(wrong)


def test_compose_and_kubernetes_files_are_valid() -> None:
    """What the Docker and kubectl examples use, checked as files (CI has no engine and no cluster)."""
    files = {path.name: compose_services(path) for path in (REPO / "container").glob("docker-compose*.yml")}
    for name, services in files.items():
        for service_name, service in services.items():
            others = [other for other, services in files.items() if other != name and service_name in services]
            assert "image" in service or "build" in service or others, f"{name}: {service_name} has no image"
            assert set(service.get("depends_on") or []) <= set(services) | {s for o in others for s in files[o]}
    for path in (REPO / "container" / "k8s").glob("*.yaml"):
        docs = kubernetes_objects(path)
        assert docs, path
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), doc


def test_skip_marks_are_visible_and_say_why() -> None:
    for block in all_blocks():
        if block.skip_reason is not None:
            assert len(block.skip_reason) > 10, f"{block.where}: give the reason an example does not run"


# --- Cassandra examples -------------------------------------------------------------------------------------

CASSANDRA = os.environ.get("CASSANDRA_CONTACT_POINTS")
DOCS_KEYSPACE = "digitrecognition"  # the name the pages use; replaced by a scratch keyspace when they run
DOCS_NODE = "10.0.0.5"  # the node the pages use; replaced by CASSANDRA_CONTACT_POINTS


def cql_statements(block: Block, keyspace: str) -> list[str]:
    text = "\n".join(line for line in block.text.splitlines() if not line.lstrip().startswith("--"))
    text = text.replace(f"{DOCS_KEYSPACE}.", f"{keyspace}.").replace(f"EXISTS {DOCS_KEYSPACE} ", f"EXISTS {keyspace} ")
    text = text.replace("<id>", "5b6f0a52-c812-11f1-9a3e-0242ac120002")
    return [statement.strip() for statement in text.split(";") if statement.strip()]


@pytest.mark.slow
@pytest.mark.skipif(
    not CASSANDRA, reason="CASSANDRA_CONTACT_POINTS is not set: the CQL and Cassandra examples need a node"
)
def test_cassandra_examples_run(tmp_path: Path) -> None:
    """Every ``sql`` block (CQL) runs in cqlsh's place against a scratch keyspace, then the store writes and
    reads a record with an image in the tables the docs created; the ``needs cassandra`` Python blocks run."""
    import uuid

    from cassandra import InvalidRequest
    from cassandra.cluster import Cluster

    from digitrec.records.config import RecordsConfig
    from digitrec.records.factory import open_primary
    from digitrec.records.record import PredictionRecord

    keyspace = f"docs_test_{uuid.uuid4().hex[:10]}"
    points = CASSANDRA.split(",")
    port = int(os.environ.get("CASSANDRA_PORT", 9042))
    cluster = Cluster(points, port=port, protocol_version=4)
    session = cluster.connect()
    try:
        ran = 0
        blocks = [b for b in all_blocks() if b.lang == "sql" and not b.skip_reason]
        for block in sorted(blocks, key=lambda b: "CREATE KEYSPACE" not in b.text):  # the keyspace first
            for statement in cql_statements(block, keyspace):
                try:
                    session.execute(statement, timeout=60)
                except InvalidRequest as exc:  # ALTER ... ADD of a column the CREATE above already has
                    assert statement.upper().startswith("ALTER TABLE") and "already exists" in str(exc), (
                        f"{block.where}: {statement}\n{exc}"
                    )
                ran += 1
        assert ran >= 10, "no CQL examples found"
        config = RecordsConfig(contact_points=tuple(points), port=port, keyspace=keyspace, data_dir=tmp_path / "data")
        record = PredictionRecord.new(
            model_name="digits", model_version="docs", label=7, class_name="7", confidence=0.9,
            probabilities=[0.01] * 7 + [0.91] + [0.01] * 2, source="upload", file_name="seven.png",
        )  # fmt: skip
        png = (REPO / "examples" / "seven.png").read_bytes()
        with open_primary(config) as store:  # the tables the docs created
            store.add(record, png)
            assert store.get(record.request_id).label == 7 and store.get_image(record.request_id) == png

        blocks = [b for b in python_blocks() if b.needs_cassandra and not b.skip_reason]
        assert blocks, "no Python example is marked as needing Cassandra"
        code = [b.text.replace(DOCS_NODE, points[0]).replace(f'"{DOCS_KEYSPACE}"', f'"{keyspace}"') for b in blocks]
        env = {**program_env(), "CASSANDRA_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, "-c", RUNNER], input=json.dumps(code), cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert "@@RESULTS@@" in result.stdout, result.stdout + result.stderr
        outcomes = json.loads(result.stdout.rsplit("@@RESULTS@@", 1)[1])
        problems = [f"{b.where} raised:\n{o['error']}" for b, o in zip(blocks, outcomes) if not o["ok"]]
        assert not problems, "\n".join(problems)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        cluster.shutdown()
