"""Rego policies on verified in-toto statements, evaluated by an embedded engine (``regopy``, rego-cpp).

policy-controller evaluates an attestation's Rego module (``package sigstore``, Rego v0 syntax) with the query
``isCompliant = data.sigstore.isCompliant`` and the verified statement as ``input``; the rule may be a boolean or
an object ``{"result": bool, "error": str, "warning": str}``. Modules written for other tools often name the
rule ``allow`` instead; a module that defines no ``isCompliant`` is evaluated on ``allow`` (and the import warns,
since policy-controller itself would deny everything with it).

**Undefined means deny.** ``regopy`` 1.5 answers the bare query ``data.sigstore.allow`` with *undefined* when
only the ``default allow = false`` rule applies (while ``data.sigstore`` shows ``allow: false``). Only an
explicit ``true`` (or ``{"result": true}``) allows; undefined, false, any other value, and evaluation errors deny.

Framework-free. Compiled modules are cached per process by source text.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Any

from provenance.core.errors import ProvenanceError

__all__ = ["PACKAGE", "RegoDecision", "RegoError", "RegoPolicy", "compile_rego"]

PACKAGE = "sigstore"
MAX_MODULE_CHARS = 64 * 1024
_MODULE_FILE = "sigstore.rego"
# rego-cpp reports errors as "(error <n>:<file>|<offset>|<length> (errormsg <n>:<text>) ...)".
_ERROR_RE = re.compile(r"\(error \d+:[^|]*\|(\d+)\|\d+\s*\(errormsg \d+:([^)\n]*)\)")
_PACKAGE_RE = re.compile(r"^\s*package\s+([\w.]+)", re.MULTILINE)


class RegoError(ProvenanceError):
    """A Rego module does not compile (or is not a ``package sigstore`` module with a decision rule).

    ``line`` and ``column`` (1-based) point into the module when known, else 0.
    """

    code = "rego_invalid"

    def __init__(self, message: str, *, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class RegoDecision:
    """The outcome of one evaluation: ``allowed`` only on an explicit true; ``reason`` says why not."""

    allowed: bool
    reason: str = ""
    warning: str = ""


class RegoPolicy:
    """A compiled Rego module. Build with :func:`compile_rego`; evaluate with :meth:`evaluate` (thread-safe)."""

    __slots__ = ("_bundle", "_lock", "_runner", "rule", "source")

    def __init__(self, source: str, rule: str, bundle: Any) -> None:
        from regopy import Interpreter, LogLevel

        self.source = source
        self.rule = rule
        self._bundle = bundle
        self._runner = Interpreter()
        self._runner.log_level = LogLevel.NONE
        self._lock = threading.Lock()

    @property
    def query(self) -> str:
        return f"data.{PACKAGE}.{self.rule}"

    def evaluate(self, document: Any) -> RegoDecision:
        """Evaluate the decision rule with ``document`` as ``input``; never raises.

        Returns an allowing decision only when the rule is exactly ``true`` (or an object whose ``result`` is
        true); undefined, false, other values and evaluation errors deny, with the reason.
        """
        from regopy import RegoError as EngineError

        try:
            with self._lock:
                self._runner.set_input(document)
                output = self._runner.query_bundle(self._bundle)
                ok = output.ok()
                text = str(output)
                results = list(output.results) if ok else []
        except (EngineError, TypeError, ValueError) as err:
            return RegoDecision(False, f"the Rego policy could not be evaluated: {_first_line(str(err))}")
        if not ok:
            return RegoDecision(False, f"the Rego policy failed at evaluation ({_first_line(text)}); denied")
        values = [r.bindings.get("decision") for r in results if "decision" in r.bindings]
        if not values:
            return RegoDecision(False, f"{self.query} is undefined (no rule matched and no default applied); "
                                       "undefined means deny")
        value = values[0]
        if value is True:
            return RegoDecision(True)
        if isinstance(value, dict):
            error, warning = str(value.get("error") or ""), str(value.get("warning") or "")
            if value.get("result") is True:
                return RegoDecision(True, warning=warning)
            detail = f": {error}" if error else ""
            return RegoDecision(False, f"{self.query} is not compliant{detail}", warning)
        if value is False:
            return RegoDecision(False, f"{self.query} is false")
        return RegoDecision(False, f"{self.query} is {str(value)[:80]!r}, not true; denied")


def compile_rego(source: str) -> RegoPolicy:
    """Compile a ``package sigstore`` module; returns the (per-process cached) :class:`RegoPolicy`.

    Raises :class:`RegoError` with the line and column of the first problem when the module does not compile,
    is not ``package sigstore``, or defines neither ``isCompliant`` nor ``allow``.
    """
    if not isinstance(source, str) or not source.strip():
        raise RegoError("the Rego module is empty")
    if len(source) > MAX_MODULE_CHARS:
        raise RegoError(f"the Rego module is {len(source)} characters; at most {MAX_MODULE_CHARS} are accepted")
    return _compile(source)


def defines_rule(source: str, rule: str) -> bool:
    """Whether the module has a rule head (or default) named ``rule``."""
    return re.search(rf"^\s*(?:default\s+)?{re.escape(rule)}\b", source, re.MULTILINE) is not None


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> RegoPolicy:
    from regopy import Interpreter, LogLevel
    from regopy import RegoError as EngineError

    package = _PACKAGE_RE.search(source)
    if package is None:
        raise RegoError("the Rego module has no package declaration; policy-controller needs `package sigstore`",
                        line=1, column=1)
    if package.group(1) != PACKAGE:
        line, column = _position(source, package.start(1))
        raise RegoError(f"the Rego module is `package {package.group(1)}`; policy-controller evaluates only "
                        f"`package {PACKAGE}`", line=line, column=column)
    rule = "isCompliant" if defines_rule(source, "isCompliant") else "allow"
    if rule == "allow" and not defines_rule(source, "allow"):
        raise RegoError("the Rego module defines neither `isCompliant` (policy-controller's rule) nor `allow`",
                        line=_position(source, package.start())[0], column=1)
    interpreter = Interpreter()
    interpreter.log_level = LogLevel.NONE  # rego-cpp prints compile errors to stdout otherwise
    try:
        interpreter.add_module(_MODULE_FILE, source)
        bundle = interpreter.build(f"decision = data.{PACKAGE}.{rule}")
    except EngineError as err:
        raise _translate(source, str(err)) from err
    if not bundle.ok():
        raise RegoError("the Rego module does not compile")
    return RegoPolicy(source, rule, bundle)


def _translate(source: str, text: str) -> RegoError:
    match = _ERROR_RE.search(text)
    if match is None:
        return RegoError(f"the Rego module does not compile: {_first_line(text)}")
    line, column = _position(source, int(match.group(1)))
    return RegoError(f"the Rego module does not compile: {match.group(2).strip()} (module line {line}, "
                     f"column {column}: {_line_text(source, line)!r})", line=line, column=column)


def _position(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset (rego-cpp offsets count characters of the module)."""
    before = source[: max(0, min(offset, len(source)))]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _line_text(source: str, line: int) -> str:
    lines = source.splitlines()
    return lines[line - 1].strip()[:80] if 0 < line <= len(lines) else ""


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]
