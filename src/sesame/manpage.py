"""Man pages from the sources they document, so they cannot drift: ``sesame(8)``
from the command's own parser (what ``--help`` prints), ``sesame.toml(5)`` from the
configuration reference (``docs/configuration.md``).

``python -m sesame.manpage OUTDIR [docs/configuration.md]`` writes ``sesame.8`` and,
given the reference, ``sesame.toml.5``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from sesame import __version__

HEADER = '.TH "{name}" "{section}" "" "sesame {version}" "{title}"\n'


def roff(text: str) -> str:
    """``text`` as roff: backslashes escaped, no line starting a request."""
    lines = text.replace("\\", "\\e").splitlines()
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in lines)


def command_page(parser: argparse.ArgumentParser) -> str:
    """sesame(8): the top help, then each command's own help, verbatim."""
    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal: the same everywhere
    out = [HEADER.format(name="SESAME", section="8", version=__version__, title="sesame")]
    out += [".SH NAME", "sesame \\- port knocking and single-packet authorization"]
    out += [".SH SYNOPSIS", ".nf", roff(parser.format_usage().strip()), ".fi"]
    out += [".SH DESCRIPTION", roff(parser.description or "")]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out.append(".SH COMMANDS")
    for name, command in sub.choices.items():
        out += [f".SS {name}", ".nf", roff(command.format_help().rstrip()), ".fi"]
    out += [".SH SEE ALSO", "sesame.toml(5), nft(8), systemd.service(5)"]
    return "\n".join(out) + "\n"


def config_page(markdown: str) -> str:
    """sesame.toml(5) from the Markdown reference: headings, paragraphs, tables (a
    tagged paragraph a row) and code blocks."""
    out = [HEADER.format(name="SESAME.TOML", section="5", version=__version__, title="sesame")]
    out += [".SH NAME", "sesame.toml \\- the configuration of sesame(8)", ".SH DESCRIPTION"]
    code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            out.append(".fi" if code else ".nf")
            code = not code
        elif code:
            out.append(roff(line) or ".sp")
        elif line.startswith("# "):
            continue  # the page's own title
        elif line.startswith("#"):
            out.append(f".SH {roff(_plain(line.lstrip('#').strip())).upper()}")
        elif line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
            if not cells or set(cells[0]) <= set("-: ") or cells[0] in ("key", "metric"):
                continue  # a header row or its rule
            rest = " \\(em ".join(roff(_plain(cell)) for cell in cells[1:])
            out += [".TP", roff(_plain(cells[0])), rest]
        elif not line.strip():
            out.append(".PP")
        else:
            out.append(roff(_plain(line)))
    return "\n".join(out) + "\n"


def _plain(text: str) -> str:
    """Markdown inline markup as plain text: code spans, emphasis, links, escapes."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = text.replace("\\|", "|")
    return re.sub(r"[`*]", "", text)


def main(argv: list[str]) -> int:
    from sesame.cli import parser

    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    os.makedirs(argv[0], exist_ok=True)
    with open(os.path.join(argv[0], "sesame.8"), "w") as handle:
        handle.write(command_page(parser()))
    if len(argv) > 1:
        with open(argv[1], encoding="utf-8") as source:
            page = config_page(source.read())
        with open(os.path.join(argv[0], "sesame.toml.5"), "w") as handle:
            handle.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
