"""The scripts' command lines: Fire's syntax, checked strictly against a function's
signature, and help made from its docstring.

Fire's syntax is kept (`--flag value`, `--flag=value`, `--noflag` for a switch, values
typed as Python literals so `1` is an int and `abc` a str, the first parameters also by
position), and Fire's surprises are not: no short flags that are then refused as
ambiguous, no pager, no `-- --interactive` Python shell, an unknown flag is named with the
closest real one, and a value that starts with `-` (`--prompt "-1 is"`) is a value.

A parameter whose default is a str, or that is annotated `str`, takes its text exactly as
typed (`--prompt 1_000` stays "1_000"); annotated `list[str]`, it may be given several
times. A parameter whose default is a bool, or that is annotated `bool`, is a switch.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import shutil
import textwrap
import typing

NUMBER = re.compile(r"-\d|-\.\d")  # a negative number is a value, never a flag
TRUE, FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


class Help(Exception):
    """`--help` or `-h` was given: show the help and stop."""


class ParseError(ValueError):
    """A command line that does not fit the signature; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    default: object
    switch: bool  # --name / --noname
    text: bool  # the value is kept as typed
    repeated: bool  # may be given several times; the value is a list
    positional: bool  # may also be given by position


def params_of(fn) -> list[Param]:
    out = []
    for p in inspect.signature(fn, eval_str=True).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = p.annotation
        args = typing.get_args(hint)
        repeated = typing.get_origin(hint) in (list, tuple) or any(
            typing.get_origin(a) in (list, tuple) for a in args)
        text = isinstance(p.default, str) or hint is str or str in args or repeated
        switch = isinstance(p.default, bool) or hint is bool or bool in args
        out.append(Param(p.name, p.default, switch, text and not switch, repeated,
                         p.kind == p.POSITIONAL_OR_KEYWORD))
    return out


def typed(param: Param, text: str):
    """Fire's typing of a value: Python literals, else the text itself."""
    if param.text:
        return text
    from fire.parser import DefaultParseValue
    try:
        return DefaultParseValue(text)
    except (RecursionError, MemoryError):  # absurd nesting: keep the text, let the cast say
        return text


def switch_value(text: str):
    return True if text.lower() in TRUE else False if text.lower() in FALSE else text


def shown(value, width: int = 60) -> str:
    """repr(value), shortened for an error line."""
    text = repr(value)
    return text if len(text) <= width else text[:width - 5] + "...'"


def parse(fn, argv: list[str]) -> tuple[list, dict]:
    """(positional values, keyword values) for `fn` from `argv`; raises Help, or ParseError
    for the first problem."""
    params = params_of(fn)
    by_name = {p.name: p for p in params}
    args, kwargs, errors, help_asked = [], {}, [], False
    tokens, i = list(argv), 0
    while i < len(tokens):
        token, i = tokens[i], i + 1
        if token == "--":
            args += tokens[i:]
            break
        if token in ("-h", "--help"):
            help_asked = True
            continue
        if not token.startswith("-") or token == "-" or NUMBER.match(token):
            args.append(token)
            continue
        spelled, eq, value = token.partition("=")
        name = spelled.lstrip("-").replace("-", "_")
        param = by_name.get(name) if spelled.startswith("--") else None
        negated = None
        if param is None and spelled.startswith("--"):
            bare = name[3:] if name.startswith("no_") else name[2:] if name.startswith("no") else ""
            negated = by_name.get(bare)
            if negated is not None and not negated.switch:
                negated = None
        if param is None and negated is None:
            errors.append(unknown(spelled, params))
            continue
        if negated is not None:
            if eq:
                errors.append(f"{spelled} takes no value: give {spelled} alone, or "
                              f"--{negated.name}={value}")
                continue
            kwargs[negated.name] = False
            continue
        if param.switch:
            if eq:
                kwargs[name] = switch_value(value)
            elif i < len(tokens) and tokens[i].lower() in TRUE | FALSE:
                kwargs[name], i = switch_value(tokens[i]), i + 1
            else:
                kwargs[name] = True
            continue
        if not eq:
            if i == len(tokens) or tokens[i].startswith("--"):
                errors.append(f"--{name} needs a value (write --{name}=VALUE for a value "
                              f"that starts with --)")
                continue
            value, i = tokens[i], i + 1
        value = typed(param, value)
        if param.repeated:
            kwargs.setdefault(name, []).append(value)
        else:
            kwargs[name] = value
    if help_asked:
        raise Help()
    positional = [p for p in params if p.positional]
    if len(args) > len(positional):
        errors.append(f"unexpected argument {shown(args[len(positional)])}: options are "
                      f"given as --flag VALUE (--help lists them)")
    for p, value in zip(positional, args):
        if p.name in kwargs:
            errors.append(f"{p.name} is given twice: as the argument {shown(value)} and as "
                          f"--{p.name}")
    given = set(kwargs) | {p.name for p in positional[:len(args)]}
    for p in params:
        if p.default is inspect.Parameter.empty and p.name not in given:
            errors.append(f"--{p.name} is required" + (
                f" (or {p.name.upper()} as argument {positional.index(p) + 1})"
                if p.positional else ""))
    if errors:
        raise ParseError(errors[0])
    return [typed(p, v) for p, v in zip(positional, args)], kwargs


def unknown(spelled: str, params: list[Param]) -> str:
    """`unknown flag --lenght: did you mean --length?`, with the closest real flags."""
    names = [f"--{p.name}" for p in params] + [f"--no{p.name}" for p in params if p.switch]
    word = spelled.lstrip("-").replace("-", "_")
    if not spelled.startswith("--") and len(word) == 1:
        close = [f"--{p.name}" for p in params if p.name.startswith(word)]
        why = " (there are no one-letter flags)"
    else:
        score = {n: difflib.SequenceMatcher(None, f"--{word}", n).ratio() for n in names}
        best = max(score.values(), default=0)
        close = [n for n in names if score[n] >= max(best, 0.6)]  # the closest, and ties
        why = ""
    if not close:
        return f"unknown flag {spelled}{why} (--help lists every flag)"
    options = close[0] if len(close) == 1 else ", ".join(close[:-1]) + " or " + close[-1]
    return f"unknown flag {spelled}{why}: did you mean {options}?"


def help_text(fn, prog: str, *, width: int | None = None) -> str:
    """Usage, the docstring's text and every flag with its default and description."""
    width = width or min(shutil.get_terminal_size((80, 24)).columns, 80)
    text, described, returns = docstring(inspect.getdoc(fn) or "")
    params = params_of(fn)
    positional = [p.name.upper() for p in params if p.positional]
    out = [f"Usage: {prog} [--flag VALUE ...]", ""]
    if text:
        out += [paragraph(text, width, "")]
    out += ["", "Flags:"]
    for p in params:
        if p.switch:
            flag = f"--{p.name} / --no{p.name}"
            default = {True: "on", False: "off"}.get(p.default, "see below")
        else:
            flag = f"--{p.name}={p.name.upper()}"
            default = "required" if p.default is inspect.Parameter.empty else \
                "none" if p.default is None else p.default
        if p.repeated:
            flag += " (repeatable)"
        out.append(f"  {flag}   ({'' if default == 'required' else 'default: '}{default})")
        if described.get(p.name):
            out.append(paragraph(described[p.name], width, " " * 6))
    out.append("  -h, --help")
    out.append(paragraph("Show this help and exit.", width, " " * 6))
    if positional:
        out += ["", paragraph(f"The first flags may also be given by position, in this order: "
                              f"{' '.join(positional)}.", width, "")]
    if returns:
        out += ["", paragraph("Exit status: " + returns.removeprefix("The exit status: "),
                              width, "")]
    return "\n".join(out) + "\n"


SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Yields):\s*$")
ARG = re.compile(r"^(\w+)(?: \([^)]*\))?:\s*(.*)$")


def docstring(doc: str) -> tuple[str, dict[str, str], str]:
    """(the text before the sections, {arg: description}, the Returns text) of a
    Google-style docstring: an arg starts at the section's indentation with `name:`, and
    its continuation lines are indented further."""
    text, args, returns = [], {}, []
    section, indent, current = None, None, None
    for line in doc.splitlines():
        if SECTION.match(line.strip()) and not line.startswith(" "):
            section, indent = SECTION.match(line.strip()).group(1), None
            continue
        if section is None:
            text.append(line)
        elif section in ("Args", "Arguments") and line.strip():
            here = len(line) - len(line.lstrip())
            indent = here if indent is None else indent
            found = ARG.match(line.strip()) if here == indent else None
            if found:
                current = found.group(1)
                args[current] = found.group(2)
            elif current:
                args[current] += " " + line.strip()
        elif section == "Returns":
            returns.append(line.strip())
    return "\n".join(text).strip(), args, " ".join(returns).strip()


def paragraph(text: str, width: int, indent: str) -> str:
    """Re-wraps each paragraph of `text` (blank-line separated) to `width`."""
    blocks = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(textwrap.fill(" ".join(b.split()), width, initial_indent=indent,
                                     subsequent_indent=indent) for b in blocks)
