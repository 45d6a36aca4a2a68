"""The docs' `segzoo` commands parse, and the configs they name exist."""

import re
import shlex

import pytest
from conftest import REPO

from segzoo.cli import build_parser

DOCS = sorted((REPO / "docs").glob("*.md"))


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_doc_commands_parse(doc):
    parser = build_parser()
    blocks = re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S)
    lines = [line for b in blocks for line in b.replace("\\\n", " ").splitlines()]  # join continuations
    commands = [line.split("#")[0].strip() for line in lines]
    for command in (c for c in commands if c.startswith("segzoo ")):
        words = [w for w in shlex.split(command)[1:] if not (w.startswith("[") or w.endswith("]"))]
        args = parser.parse_args(words)
        config = getattr(args, "config", None)
        if config and config.startswith("configs/"):  # run folders (work_dirs/...) are made by earlier commands
            assert (REPO / config).is_file(), config
