"""The README and the docs/ pages cannot rot: their links resolve, and their commands name real things.

- Every relative link (and image) points to a file that exists, and every ``#anchor`` to a heading of that file, by
  GitHub's rules for heading ids.
- Every command of a fenced shell block (bash, sh, shell, console), and every inline code span that starts like a
  command (``make …``, ``python …``, ``SCRIPT.py …``, ``torchrun …``), names something real: ``make X`` a target of
  the Makefile; ``python SCRIPT.py`` / ``./SCRIPT.py`` / ``python -m MODULE`` / ``torchrun … SCRIPT.py`` a script or
  module of this repository, whose ``--help`` lists every flag the command uses (positional arguments are not
  checked); ``curl`` an API route of the web app, with its method.
- Anything else in a shell block must be a program known not to be the project's (pip, git, cd, export, …), so a
  new kind of command is a decision, not an accident.

No training and no network. ``--help`` runs once per entry point, all of them in one process, so torch (what
costs) is imported once. The outputs are kept in pytest's cache, keyed by the content of every Python file of the
repository, so a rerun with no code change reads them back.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHELL_LANGS = {"bash", "sh", "shell", "console"}
# Programs of shell blocks that are not this project's: their arguments are not checked.
NOT_OURS = {
    "apt", "apt-get", "cd", "echo", "export", "ffmpeg", "git", "huggingface-cli", "ls", "pip", "pip3", "source",
    "sudo", "tensorboard", "unzip",
}  # fmt: skip
# `python -m` modules that are not this project's.
FOREIGN_MODULES = {"pip", "pytest", "venv"}
# Entry points without argparse (so without --help), and the flags they take: `python -m benchmarks` reads its
# argv by hand (benchmark names and --quick; benchmarks/__main__.py).
HAND_PARSED = {"benchmarks": {"--quick"}}

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
HELP_FLAG = re.compile(r"(?:^|[\s,])(-{1,2}[A-Za-z][\w-]*)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


@dataclass(frozen=True)
class Entry:
    """A script (a path relative to the repository) or a module (dotted) run with ``python``."""

    kind: str
    name: str

    def source(self) -> Path:
        if self.kind == "script":
            return ROOT / self.name
        base = ROOT.joinpath(*self.name.split("."))
        return base / "__main__.py" if base.is_dir() else base.with_suffix(".py")


@dataclass
class Command:
    """One command of a page: its tokens, the folder it runs in (after a ``cd``) and where it was written."""

    where: str
    tokens: list[str]
    cwd: Path = ROOT


# ---- markdown


def github_slug(heading: str) -> str:
    """The id GitHub gives a heading: markup dropped, lowercase, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def without_code(text: str) -> str:
    """The page without its fenced blocks and inline code (whose brackets and hashes are not markup)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub("", text)


def anchors(text: str) -> set[str]:
    """Every heading id of a page, duplicates numbered as GitHub does (``x``, ``x-1``, ``x-2``)."""
    seen: dict[str, int] = {}
    ids = set()
    for match in HEADING.finditer(FENCE.sub("", text)):
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def link_problems(page: Path, text: str, read: Callable[[Path], str] | None = None) -> list[str]:
    """Each relative link of ``text`` (written in ``page``) whose file or heading does not exist."""
    read = read or (lambda path: path.read_text(encoding="utf-8"))
    problems = []
    for match in LINK.finditer(without_code(text)):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: … (no network here)
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.name}: link {target!r}"
        if not path.exists():
            problems.append(f"{where}: {path_part} does not exist")
        elif anchor and path.suffix == ".md" and anchor not in anchors(read(path)):
            problems.append(f"{where}: no heading #{anchor} in {path.name}")
        elif anchor and path.suffix != ".md":
            problems.append(f"{where}: an anchor into a file that is not Markdown")
    return problems


# ---- commands


def shell_blocks(text: str) -> Iterator[tuple[int, str]]:
    """(line number, code) of each fenced shell block."""
    for match in FENCE.finditer(text):
        if match.group(2).lower() in SHELL_LANGS:
            yield text.count("\n", 0, match.start(3)) + 1, match.group(3)


def logical_lines(code: str, first_line: int) -> Iterator[tuple[int, str]]:
    """Lines of a shell block with ``\\`` continuations joined and a console's ``$`` prompt removed."""
    pending, start = "", first_line
    for number, line in enumerate(code.splitlines(), first_line):
        if not pending:
            start = number
            line = re.sub(r"^\s*\$\s+", "", line)
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def split_commands(line: str) -> list[list[str]]:
    """The commands of one shell line (``a && b; c``), each as tokens, comments dropped."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose-like code: take it word by word
        tokens = line.split("#", 1)[0].split()
    commands, current = [], []
    for token in tokens:
        if token in {"&&", "||", ";"}:
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def page_commands(page: Path, text: str) -> Iterator[Command]:
    """Every command of a page: its shell blocks (a ``cd`` carries over within a block) and its command-like
    inline code."""
    for first_line, code in shell_blocks(text):
        cwd = ROOT
        for number, line in logical_lines(code, first_line):
            for tokens in split_commands(line):
                command = Command(f"{page.name}:{number}", tokens, cwd)
                if tokens[0] == "cd" and len(tokens) > 1:
                    cwd = (cwd / tokens[1]).resolve()
                yield command
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for match in INLINE_CODE.finditer(prose):
        span = match.group(2).replace("\n", " ").strip()
        first = span.split(" ", 1)[0]
        if (
            first in {"make", "python", "python3"}
            or (first == "torchrun" and ".py" in span)
            or (first.endswith(".py") and " " in span)
        ):
            number = prose.count("\n", 0, match.start()) + 1
            for tokens in split_commands(span):
                yield Command(f"{page.name}:{number} (inline)", tokens)


def flags_of_tokens(tokens: Iterable[str]) -> list[str]:
    """The flags among a command's arguments: ``--name``, ``--name=value``, ``-x``, also inside ``[...]``."""
    flags = []
    for token in tokens:
        token = token.lstrip("[(").rstrip("])")
        if re.match(r"^--?[A-Za-z]", token):
            flags.append(token.split("=", 1)[0])
    return flags


def makefile_targets(makefile: Path) -> set[str]:
    """Targets of a Makefile: the names before ``:`` (not ``:=``) at the start of a rule line."""
    targets = set()
    for line in makefile.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\- ]+?)\s*:(?![:=])", line)
        if match:
            targets.update(t for t in match.group(1).split() if not t.startswith("."))
    return targets


def without_env(tokens: list[str]) -> list[str]:
    """A command without its leading ``NAME=value`` assignments."""
    index = 0
    while index < len(tokens) and ENV_ASSIGNMENT.match(tokens[index]):
        index += 1
    return tokens[index:]


def runs_python(program: str) -> bool:
    """Whether a command's first word runs Python: python, .venv/bin/python, torchrun, a script."""
    return program in {"python", "python3", "torchrun"} or program.endswith(("/python", ".py"))


def _entry(tokens: list[str], cwd: Path) -> tuple[Entry | None, list[str], str | None]:
    """The entry point a python / script / torchrun command runs and its arguments, or what is wrong with it.
    (None, [], None): a python command that is not one of ours (``python -c``, ``python -m pytest``)."""
    program, args = tokens[0], tokens[1:]
    if program == "torchrun":
        scripts = [i for i, t in enumerate(tokens) if t.endswith(".py")]
        if not scripts:
            return None, [], "torchrun without a script"
        program, args = tokens[scripts[0]], tokens[scripts[0] + 1 :]
    elif not program.endswith(".py"):  # python, python3, .venv/bin/python
        foreign = args[:1] == ["-m"] and len(args) > 1 and args[1].split(".")[0] in FOREIGN_MODULES
        if not args or args[0] == "-c" or foreign:
            return None, [], None
        if args[0] == "-m":
            entry = Entry("module", args[1]) if len(args) > 1 else None
            if entry is None or not entry.source().is_file():
                return None, [], f"no module {args[1] if len(args) > 1 else ''} in this repository"
            return entry, args[2:], None
        program, args = args[0], args[1:]
    full = (cwd / program).resolve()
    if not full.is_file() or ROOT not in full.parents:
        return None, [], "no such script"
    return Entry("script", full.relative_to(ROOT).as_posix()), args, None


def command_problems(
    command: Command,
    flags_of: Callable[[Entry], set[str] | None],
    targets: set[str],
    route_problem: Callable[[str, str], str | None] | None,
) -> list[str]:
    """What is wrong with one command; ``flags_of`` gives an entry point's flags (None: it has no --help),
    ``route_problem(method, path)`` says what is wrong with an API call (None: nothing; no callable: unchecked)."""
    tokens = without_env(command.tokens)
    if not tokens:
        return []
    program, where = tokens[0], f"{command.where}: {' '.join(command.tokens)}"
    if program in NOT_OURS:
        return []
    if program == "make":
        wanted = [t for t in tokens[1:] if not t.startswith("-") and not ENV_ASSIGNMENT.match(t)]
        return [f"{where}: no make target {t!r}" for t in wanted if t not in targets]
    if program == "curl":
        return _curl_problems(tokens, where, route_problem)
    if not runs_python(program):
        return [f"{where}: unknown program {program!r} (a project command, or add it to NOT_OURS)"]
    entry, args, why = _entry(tokens, command.cwd)
    if why:
        return [f"{where}: {why}"]
    if entry is None:
        return []
    used = flags_of_tokens(args)
    if not used:
        return []
    known = flags_of(entry)
    if known is None:
        return [f"{where}: {entry.name} printed no argparse --help (run it to see why): cannot check {used}"]
    return [f"{where}: {entry.name} has no flag {flag}" for flag in used if flag not in known]


def _curl_problems(tokens: list[str], where: str, route_problem) -> list[str]:
    method = None
    for flag, value in zip(tokens, tokens[1:], strict=False):
        if flag in {"-X", "--request"}:
            method = value.upper()
    if method is None:
        sends = {"-F", "--form", "-d", "--data", "--data-binary"}
        method = "POST" if any(t in sends for t in tokens) else "GET"
    urls = [t for t in tokens if re.match(r"^https?://", t)]
    if route_problem is None:
        return []
    problems = []
    for url in urls:
        problem = route_problem(method, urlsplit(url).path or "/")
        if problem:
            problems.append(f"{where}: {method} {urlsplit(url).path}: {problem}")
    return problems


def parse_help(text: str) -> set[str]:
    """The flags an argparse ``--help`` lists: from its usage and its option lines (help text left out)."""
    usage, _, rest = text.partition("\n\n")
    flags = set(HELP_FLAG.findall(usage)) if usage.lstrip().startswith("usage:") else set()
    for line in rest.splitlines():
        if re.match(
            r"^ {1,4}-", line
        ):  # an option's invocation; its help, if on this line, follows two spaces
            flags.update(HELP_FLAG.findall(re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]))
    return flags


# ---- what the checks compare against


def _code_key() -> str:
    """A digest of every Python file of the repository (tests and the venv aside): --help cannot change without it."""
    digest = hashlib.sha256(f"{sys.executable} {sys.version}".encode())
    skip = {
        ".git",
        ".venv",
        "tests",
        "demo",
        "demo-video",
        "data",
        "test-artifacts",
        "bench-out",
        "__pycache__",
    }
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in skip and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".py"):
                path = Path(folder, name)
                digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def _has_argparse(entry: Entry) -> bool:
    """Whether --help is safe to run and means something: the entry point's source builds an argument parser."""
    source = entry.source()
    return (
        source.is_file() and re.search(r"argparse|get_args\(", source.read_text(encoding="utf-8")) is not None
    )


# Runs each entry point as ``python SCRIPT.py --help`` / ``python -m MODULE --help`` would, one after the other in
# one process, so that torch is imported once rather than once per script; argparse's exit after the help ends each.
_HELP_RUNNER = r"""
import contextlib, io, json, runpy, sys
entries, out_path = json.loads(sys.argv[1]), sys.argv[2]
texts = {}
for kind, name in entries:
    stdout = io.StringIO()
    sys.argv = [name, "--help"]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
            if kind == "module":
                runpy.run_module(name, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(name, run_name="__main__")
    except SystemExit:
        pass
    except Exception as error:
        stdout = io.StringIO(f"failed: {error!r}")
    texts[f"{kind}:{name}"] = stdout.getvalue()
with open(out_path, "w") as f:
    json.dump(texts, f)
"""


def _run_help(entries: list[Entry]) -> dict[str, str | None]:
    """Each entry's --help text by its key ``kind:name`` (None where it printed no argparse usage)."""
    if not entries:
        return {}
    # The re-execution with tcmalloc (util/allocator.py) would replace this process: not for --help.
    env = {**os.environ, "SPOT_ALLOCATOR": "system"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "help.json")
        spec = json.dumps([[e.kind, e.name if e.kind == "module" else str(ROOT / e.name)] for e in entries])
        subprocess.run(
            [sys.executable, "-c", _HELP_RUNNER, spec, str(out)], cwd=ROOT, env=env, check=True, timeout=600
        )
        texts = json.loads(out.read_text())
    result = {}
    for entry in entries:
        text = texts.get(f"{entry.kind}:{entry.name if entry.kind == 'module' else ROOT / entry.name}")
        result[f"{entry.kind}:{entry.name}"] = text if text and text.lstrip().startswith("usage:") else None
    return result


def help_flags(entries: Iterable[Entry], cache=None) -> dict[Entry, set[str] | None]:
    """Each entry point's flags from its --help, or None where it has no --help."""
    entries = sorted(set(entries), key=lambda e: (e.kind, e.name))
    key = f"test_docs/help/{_code_key()}"
    texts = (cache.get(key, None) if cache else None) or {}
    missing = [e for e in entries if f"{e.kind}:{e.name}" not in texts and _has_argparse(e)]
    if missing:
        texts = {**texts, **_run_help(missing)}
        if cache is not None:
            cache.set(key, texts)
    flags: dict[Entry, set[str] | None] = {}
    for entry in entries:
        text = texts.get(f"{entry.kind}:{entry.name}")
        flags[entry] = parse_help(text) if text else HAND_PARSED.get(entry.name)
    return flags


def app_route_checker() -> Callable[[str, str], str | None]:
    """``route_problem(method, path)`` from the web app's own url_map. Building the app is cheap: no model is loaded
    (MODEL_DIR need not exist) and no worker process starts before a job; its job runner is shut down at once."""
    from werkzeug.exceptions import MethodNotAllowed, NotFound
    from werkzeug.routing import RequestRedirect

    from app.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {"MODEL_DIR": Path(tmp) / "no-model", "JOBS_DIR": Path(tmp) / "jobs", "TESTING": True}
        )
        app.extensions["spot_jobs"].shutdown()
    adapter = app.url_map.bind("localhost")

    def route_problem(method: str, path: str) -> str | None:
        try:
            adapter.match(path, method=method)
        except RequestRedirect:
            return None
        except MethodNotAllowed:
            return "the route exists, but not for this method"
        except NotFound:
            return "no such route in the web app"
        return None

    return route_problem


def all_commands() -> list[Command]:
    return [c for page in PAGES for c in page_commands(page, page.read_text(encoding="utf-8"))]


# ---- the tests


def test_the_pages_are_there():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/real-data.md", "docs/training.md", "docs/benchmarks.md"} <= names
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 300, (
        "the README is meant to fit on a screen or two: move detail to docs/"
    )
    # The two commands CI and a newcomer start from, written as they are typed.
    assert "make demo" in readme and "make test" in readme


def test_every_link_resolves():
    problems = [p for page in PAGES for p in link_problems(page, page.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_every_api_call_is_a_route():
    route_problem = app_route_checker()
    curls = [c for c in all_commands() if c.tokens[0] == "curl"]
    assert curls, "the web app's page documents its API with curl"
    problems = [p for c in curls for p in _curl_problems(c.tokens, c.where, route_problem)]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_command_names_a_real_target_script_and_flag(request):
    commands = all_commands()
    targets = makefile_targets(ROOT / "Makefile")
    entries = set()
    for command in commands:
        tokens = without_env(command.tokens)
        if tokens and runs_python(tokens[0]):
            entry, args, _ = _entry(tokens, command.cwd)
            if entry is not None and flags_of_tokens(args):
                entries.add(entry)
    flags = help_flags(entries, getattr(request.config, "cache", None))
    problems = [p for c in commands for p in command_problems(c, flags.get, targets, None)]
    assert not problems, "\n".join(problems)
    assert len(commands) > 50 and len(entries) >= 8  # the pages were read, and the scripts' --help too


# ---- the checker checks itself on made-up pages


FAKE_HELP = {
    Entry("script", "train_e2e.py"): {"-h", "--help", "-m", "--feature_arch", "--mixup", "--no-mixup"},
    Entry("module", "synthetic.library"): {"--games", "--seconds"},
}


def _problems_of(markdown: str, tmp_path: Path) -> list[str]:
    page = tmp_path / "page.md"
    page.write_text(markdown, encoding="utf-8")
    (tmp_path / "other.md").write_text(
        "# Other page\n\n## A section: with `code` (and more)\n", encoding="utf-8"
    )

    def route_problem(method, path):
        return None if (method, path) == ("GET", "/healthz") else "no such route"

    problems = link_problems(page, markdown)
    for command in page_commands(page, markdown):
        problems += command_problems(command, FAKE_HELP.get, {"demo", "test"}, route_problem)
    return problems


def test_the_checker_passes_a_good_page(tmp_path):
    good = """# Title

[other](other.md#a-section-with-code-and-more), [here](#title), ![img](other.md), [web](https://example.org/x#y)

```bash
make demo   # a comment with --unknown_flag
PYTEST_WORKERS=0 make test
python train_e2e.py data frames -m rny002 \\
    --no-mixup
python -m synthetic.library out [--games N | --seconds S]
pip install tensorboard
curl http://HOST:8000/healthz
```

Inline: `python train_e2e.py --feature_arch rny002` and `train_e2e.py --mixup`.
"""
    assert _problems_of(good, tmp_path) == []


def test_the_checker_finds_each_kind_of_rot(tmp_path):
    bad = """# Title

[gone](missing.md) and [bad anchor](other.md#no-such-heading) and [self](#nowhere)

```sh
make deploy
python train_e2e.py data frames --mixupp
./train_e2e.py --num_epochs 3
python no_such_script.py --x
python -m synthetic.nothing
frobnicate --now
curl -X DELETE http://HOST:8000/healthz
```

Inline: `train_e2e.py --tta flip`.
"""
    problems = "\n".join(_problems_of(bad, tmp_path))
    for expected in [
        "missing.md does not exist",
        "no heading #no-such-heading in other.md",
        "no heading #nowhere in page.md",
        "no make target 'deploy'",
        "train_e2e.py has no flag --mixupp",
        "train_e2e.py has no flag --num_epochs",
        "no_such_script.py --x: no such script",
        "no module synthetic.nothing",
        "unknown program 'frobnicate'",
        "DELETE /healthz: no such route",
        "train_e2e.py has no flag --tta",
    ]:
        assert expected in problems, f"{expected!r} not reported:\n{problems}"


@pytest.mark.parametrize(
    "heading, slug",
    [
        ("What each lever does (A/B at 25 fps)", "what-each-lever-does-ab-at-25-fps"),
        ("Or skip step 1: the video library as FRAME_DIR", "or-skip-step-1-the-video-library-as-frame_dir"),
        ("Checking a GPU machine: `make gpu-check`", "checking-a-gpu-machine-make-gpu-check"),
        ("The demo (`make demo`)", "the-demo-make-demo"),
        ("See [the page](x.md) now", "see-the-page-now"),
    ],
)
def test_github_slugs(heading, slug):
    assert github_slug(heading) == slug


def test_help_parsing_takes_options_not_prose():
    text = """usage: x.py [-h] [-m ARCH] [--mixup | --no-mixup] dataset

Prose that mentions --not_a_flag in passing.

options:
  -h, --help            show this help message and exit
  -m {a,b-c}, --feature_arch {a,b-c}
                        the backbone; see also --also_not_a_flag
  --mixup, --no-mixup   mixup
  -lr LEARNING_RATE, --learning_rate LEARNING_RATE
"""
    flags = parse_help(text)
    assert {
        "-h",
        "--help",
        "-m",
        "--feature_arch",
        "--mixup",
        "--no-mixup",
        "-lr",
        "--learning_rate",
    } <= flags
    assert "--not_a_flag" not in flags and "--also_not_a_flag" not in flags
