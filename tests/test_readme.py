"""README's examples stay true: its Python runs, its commands parse, its paths exist."""

import re
import shlex

from conftest import REPO

from segzoo.cli import build_parser

README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_python_blocks_run():
    for code in blocks("python"):
        exec(compile(code, "README.md", "exec"), {})


def test_segzoo_commands_parse_and_their_configs_exist():
    parser = build_parser()
    commands = [line.split("#")[0].strip() for block in blocks("bash") for line in block.splitlines()]
    commands = [c for c in commands if c.startswith("segzoo ")]
    assert {shlex.split(c)[1] for c in commands} == {"list", "train", "eval", "predict", "compare", "export",
                                                     "data"}
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        if hasattr(args, "config"):
            assert (REPO / args.config).is_file(), args.config


def test_linked_files_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target


def test_make_targets_exist():
    makefile = (REPO / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", "\n".join(blocks("bash")), flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
