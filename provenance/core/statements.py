"""What a verified attestation says: SLSA provenance (v0.2, v1) and SBOMs (SPDX 2.x JSON, CycloneDX JSON).

Attestation content is attacker-controlled text until its signature verified, and large even then: parsing is
bounded in bytes, nesting depth, item counts and string lengths, and never raises on odd input. What could not
be read becomes a problem (a :class:`CheckResult` with a stable code) next to whatever could.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from provenance.core.types import CheckResult, Stage

__all__ = [
    "MAX_COMPONENTS",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "Component",
    "Material",
    "ParsedStatement",
    "Provenance",
    "Sbom",
    "parse_predicate",
    "parse_sbom",
    "parse_statement",
]

MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 64
MAX_COMPONENTS = 20_000
MAX_MATERIALS = 1_000
MAX_TEXT = 1_000

SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SPDX_TYPES = frozenset(
    {"https://spdx.dev/Document", "https://spdx.dev/Document/v2.2", "https://spdx.dev/Document/v2.3"}
)
CYCLONEDX_PREFIX = "https://cyclonedx.org/bom"


@dataclass(frozen=True, slots=True)
class Material:
    """A build input: a URI and its digests (``{"sha1": ...}``, ``{"gitCommit": ...}``)."""

    uri: str
    digest: dict[str, str] = field(default_factory=dict)
    name: str = ""


@dataclass(frozen=True, slots=True)
class Provenance:
    """The parts of a SLSA provenance predicate people ask about."""

    slsa_version: str  # "0.2" or "1"
    builder_id: str = ""
    build_type: str = ""
    source_repository: str = ""
    source_commit: str = ""
    source_ref: str = ""
    workflow: str = ""  # the workflow path or entry point
    invocation_id: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    materials: tuple[Material, ...] = ()


@dataclass(frozen=True, slots=True)
class Component:
    """One SBOM entry: a package with its version, purl and licenses (SPDX ids or expressions)."""

    name: str
    version: str = ""
    purl: str = ""
    licenses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sbom:
    """An SBOM's header and components; ``truncated`` when more than :data:`MAX_COMPONENTS` were listed."""

    format: str  # "spdx" or "cyclonedx"
    spec_version: str = ""
    name: str = ""
    components: tuple[Component, ...] = ()
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """An in-toto statement's type, subjects and parsed predicate, with the problems met reading it."""

    predicate_type: str = ""
    subjects: tuple[tuple[str, dict[str, str]], ...] = ()
    provenance: Provenance | None = None
    sbom: Sbom | None = None
    problems: tuple[CheckResult, ...] = ()

    @property
    def kind(self) -> str:
        """``provenance``, ``sbom`` or ``other``."""
        return "provenance" if self.provenance else "sbom" if self.sbom else "other"


# -- entry points -------------------------------------------------------------------------------------------


def parse_statement(statement: bytes | dict[str, Any]) -> ParsedStatement:
    """Parse an in-toto statement (bytes or an already decoded object) and its predicate.

    Returns a :class:`ParsedStatement`; never raises. Unknown predicate types give ``kind == "other"``.
    """
    problems: list[CheckResult] = []
    doc = _load(statement, problems)
    if not isinstance(doc, dict):
        if doc is not None:
            problems.append(_problem("statement_not_object", "the statement is not a JSON object"))
        return ParsedStatement(problems=tuple(problems))
    predicate_type = _text(doc.get("predicateType"))
    subjects = []
    for subject in _list(doc.get("subject"))[:MAX_MATERIALS]:
        if isinstance(subject, dict):
            subjects.append((_text(subject.get("name")), _digests(subject.get("digest"))))
    provenance, sbom = _predicate(predicate_type, doc.get("predicate"), problems)
    return ParsedStatement(predicate_type, tuple(subjects), provenance, sbom, tuple(problems))


def parse_predicate(predicate_type: str, predicate: Any) -> ParsedStatement:
    """Parse a bare predicate of the given type (as stored without its statement). Never raises."""
    problems: list[CheckResult] = []
    if _too_deep(predicate):
        problems.append(_problem("document_too_deep", f"the predicate nests deeper than {MAX_DEPTH} levels"))
        return ParsedStatement(predicate_type=predicate_type, problems=tuple(problems))
    provenance, sbom = _predicate(predicate_type, predicate, problems)
    return ParsedStatement(predicate_type, (), provenance, sbom, tuple(problems))


def parse_sbom(document: bytes | dict[str, Any]) -> tuple[Sbom | None, tuple[CheckResult, ...]]:
    """Parse an SPDX 2.x JSON or CycloneDX JSON document (for example an unsigned ``.sbom`` attachment).

    Returns the SBOM (``None`` when it is neither format) and the problems met. Never raises.
    """
    problems: list[CheckResult] = []
    doc = _load(document, problems)
    if not isinstance(doc, dict):
        if doc is not None:
            problems.append(_problem("sbom_unrecognized", "the document is not a JSON object"))
        return None, tuple(problems)
    if doc.get("bomFormat") == "CycloneDX":
        return _cyclonedx(doc, problems), tuple(problems)
    if str(doc.get("spdxVersion", "")).startswith("SPDX-2"):
        return _spdx(doc, problems), tuple(problems)
    problems.append(_problem("sbom_unrecognized", "the document is neither SPDX 2.x JSON nor CycloneDX JSON"))
    return None, tuple(problems)


# -- predicates ---------------------------------------------------------------------------------------------


def _predicate(
    predicate_type: str, predicate: Any, problems: list[CheckResult]
) -> tuple[Provenance | None, Sbom | None]:
    if predicate_type in (SLSA_V02, SLSA_V1) and not isinstance(predicate, dict):
        problems.append(_problem("predicate_malformed", f"the {predicate_type} predicate is not an object"))
        return None, None
    if predicate_type == SLSA_V02:
        return _slsa_v02(predicate), None
    if predicate_type == SLSA_V1:
        return _slsa_v1(predicate), None
    if predicate_type in SPDX_TYPES or predicate_type.startswith(CYCLONEDX_PREFIX):
        # cosign attest --type spdxjson|cyclonedx puts the document itself in the predicate (sometimes as text)
        document = predicate
        if isinstance(predicate, str):
            document = _load(predicate.encode(), problems)
        if isinstance(document, dict) and isinstance(document.get("Data"), dict | str):  # cosign's old wrapper
            document = (
                document["Data"] if isinstance(document["Data"], dict) else _load(document["Data"].encode(), problems)
            )
        sbom, sbom_problems = parse_sbom(document) if isinstance(document, dict) else (None, ())
        problems.extend(sbom_problems)
        if sbom is None and not sbom_problems:
            problems.append(_problem("predicate_malformed", f"the {predicate_type} predicate is not an SBOM"))
        return None, sbom
    return None, None


def _slsa_v02(p: dict[str, Any]) -> Provenance:
    invocation = _obj(p.get("invocation"))
    config = _obj(invocation.get("configSource"))
    materials = tuple(
        Material(_text(m.get("uri")), _digests(m.get("digest")))
        for m in _list(p.get("materials"))[:MAX_MATERIALS]
        if isinstance(m, dict)
    )
    source_uri = _text(config.get("uri")) or (materials[0].uri if materials else "")
    source_digest = _digests(config.get("digest")) or (materials[0].digest if materials else {})
    repository, ref = _split_git_uri(source_uri)
    environment = _obj(invocation.get("environment"))
    return Provenance(
        slsa_version="0.2",
        builder_id=_text(_obj(p.get("builder")).get("id")),
        build_type=_text(p.get("buildType")),
        source_repository=repository,
        source_commit=_commit(source_digest),
        source_ref=ref or _text(environment.get("github_ref")),
        workflow=_text(config.get("entryPoint")),
        invocation_id=_text(_obj(p.get("metadata")).get("buildInvocationId")),
        parameters=_flat(invocation.get("parameters")),
        materials=materials,
    )


def _slsa_v1(p: dict[str, Any]) -> Provenance:
    definition = _obj(p.get("buildDefinition"))
    run = _obj(p.get("runDetails"))
    external = _obj(definition.get("externalParameters"))
    workflow = _obj(external.get("workflow"))
    dependencies = tuple(
        Material(_text(d.get("uri")), _digests(d.get("digest")), _text(d.get("name")))
        for d in _list(definition.get("resolvedDependencies"))[:MAX_MATERIALS]
        if isinstance(d, dict)
    )
    repository = _text(workflow.get("repository"))
    ref = _text(workflow.get("ref"))
    commit = ""
    for dependency in dependencies:
        dep_repo, dep_ref = _split_git_uri(dependency.uri)
        if not repository or _same_repo(dep_repo, repository):
            repository = repository or dep_repo
            ref = ref or dep_ref
            commit = _commit(dependency.digest)
            break
    return Provenance(
        slsa_version="1",
        builder_id=_text(_obj(run.get("builder")).get("id")),
        build_type=_text(definition.get("buildType")),
        source_repository=repository,
        source_commit=commit,
        source_ref=ref,
        workflow=_text(workflow.get("path")),
        invocation_id=_text(_obj(run.get("metadata")).get("invocationId")),
        parameters=_flat({k: v for k, v in external.items() if k != "workflow"}),
        materials=dependencies,
    )


def _split_git_uri(uri: str) -> tuple[str, str]:
    """``git+https://github.com/o/r@refs/heads/main`` -> (``https://github.com/o/r``, ``refs/heads/main``)."""
    uri = uri.removeprefix("git+")
    if "@" in uri and "://" in uri:
        base, _, ref = uri.rpartition("@")
        if "/" in base.split("://", 1)[1]:
            return base.removesuffix(".git"), ref
    return uri.removesuffix(".git"), ""


def _same_repo(a: str, b: str) -> bool:
    def norm(value: str) -> str:
        return value.lower().removeprefix("git+").removesuffix(".git").split("://")[-1]

    return bool(a and b) and norm(a) == norm(b)


def _commit(digests: dict[str, str]) -> str:
    for algorithm in ("gitCommit", "sha1", "sha256"):
        if digests.get(algorithm):
            return digests[algorithm]
    return ""


# -- SBOMs --------------------------------------------------------------------------------------------------


def _spdx(doc: dict[str, Any], problems: list[CheckResult]) -> Sbom:
    packages = _list(doc.get("packages"))
    components = []
    for package in packages[:MAX_COMPONENTS]:
        if not isinstance(package, dict):
            continue
        purl = ""
        for ref in _list(package.get("externalRefs")):
            if isinstance(ref, dict) and ref.get("referenceType") == "purl":
                purl = _text(ref.get("referenceLocator"))
                break
        licenses = tuple(
            _text(package.get(key))
            for key in ("licenseConcluded", "licenseDeclared")
            if _text(package.get(key)) not in ("", "NOASSERTION", "NONE")
        )
        components.append(
            Component(
                _text(package.get("name")), _text(package.get("versionInfo")), purl, tuple(dict.fromkeys(licenses))
            )
        )
    if not isinstance(doc.get("packages"), list):
        problems.append(_problem("sbom_no_components", "the SPDX document has no packages list"))
    return Sbom(
        "spdx", _text(doc.get("spdxVersion")), _text(doc.get("name")), tuple(components), len(packages) > MAX_COMPONENTS
    )


def _cyclonedx(doc: dict[str, Any], problems: list[CheckResult]) -> Sbom:
    components: list[Component] = []
    truncated = False
    # Components nest (a component's "components"); walk them iteratively, depth-bounded by _too_deep already.
    stack = list(reversed(_list(doc.get("components"))))
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        if len(components) >= MAX_COMPONENTS:
            truncated = True
            break
        licenses = []
        for entry in _list(item.get("licenses")):
            if not isinstance(entry, dict):
                continue
            license_ = _obj(entry.get("license"))
            text = _text(entry.get("expression")) or _text(license_.get("id")) or _text(license_.get("name"))
            if text:
                licenses.append(text)
        components.append(
            Component(_text(item.get("name")), _text(item.get("version")), _text(item.get("purl")), tuple(licenses))
        )
        stack.extend(reversed(_list(item.get("components"))))
    if not isinstance(doc.get("components"), list):
        problems.append(_problem("sbom_no_components", "the CycloneDX document has no components list"))
    name = _text(_obj(_obj(doc.get("metadata")).get("component")).get("name"))
    return Sbom("cyclonedx", _text(doc.get("specVersion")), name, tuple(components), truncated)


# -- bounded, tolerant reading ------------------------------------------------------------------------------


def _load(data: bytes | dict[str, Any] | Any, problems: list[CheckResult]) -> Any:
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_DOCUMENT_BYTES:
            problems.append(
                _problem(
                    "document_too_large", f"the document is {len(data)} bytes; at most {MAX_DOCUMENT_BYTES} are read"
                )
            )
            return None
        if _bytes_too_deep(bytes(data)):
            problems.append(_problem("document_too_deep", f"the document nests deeper than {MAX_DEPTH} levels"))
            return None
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            problems.append(_problem("document_not_json", f"the document is not JSON: {str(err)[:200]}"))
            return None
    if _too_deep(data):
        problems.append(_problem("document_too_deep", f"the document nests deeper than {MAX_DEPTH} levels"))
        return None
    return data


def _bytes_too_deep(data: bytes) -> bool:
    """Bracket depth of raw JSON, counting only outside strings: refuse before json.loads recurses."""
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _too_deep(value: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)[:MAX_TEXT]
    return ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _digests(value: Any) -> dict[str, str]:
    return {str(k)[:40]: _text(v) for k, v in list(_obj(value).items())[:8] if _text(v)}


def _flat(value: Any, limit: int = 50) -> dict[str, str]:
    """A shallow, bounded, text-only view of a parameters object (nested values as compact JSON)."""
    result: dict[str, str] = {}
    for key, item in list(_obj(value).items())[:limit]:
        text = _text(item) if not isinstance(item, dict | list) else json.dumps(item, default=str)[:MAX_TEXT]
        result[str(key)[:100]] = text
    return result


def _problem(code: str, message: str) -> CheckResult:
    hint = "the attestation content is shown as far as it could be read"
    return CheckResult(Stage.FORMAT, code, False, message, hint)
