"""The embedded Rego engine: allow, deny, and undefined-means-deny (the regopy 1.5 trap)."""

from __future__ import annotations

import pytest
from regopy import Interpreter

from provenance.core.rego import RegoError, compile_rego

ISSUE_MODULE = """package sigstore
default allow = false
allow {
  input.predicate.buildDefinition.buildType == "https://github.com/actions/runner"
}
"""
RUNNER = {"predicate": {"buildDefinition": {"buildType": "https://github.com/actions/runner"}}}
OTHER = {"predicate": {"buildDefinition": {"buildType": "https://example.com/other"}}}


def test_allows_and_denies_on_the_statement():
    rego = compile_rego(ISSUE_MODULE)
    assert rego.rule == "allow"
    assert rego.evaluate(RUNNER).allowed
    denied = rego.evaluate(OTHER)
    assert not denied.allowed and "data.sigstore.allow is false" in denied.reason


def test_regopy_answers_undefined_when_only_the_default_applies_and_we_deny():
    # The trap, pinned: the bare query is "undefined" although data.sigstore shows allow: false.
    raw = Interpreter()
    raw.add_module("sigstore.rego", ISSUE_MODULE)
    raw.set_input(OTHER)
    assert str(raw.query("data.sigstore.allow")) == "undefined"
    assert raw.query("data.sigstore").results[0].expressions == [{"allow": False}]
    # Undefined (here: no default at all, nothing matches) must mean deny, never allow.
    no_default = compile_rego(ISSUE_MODULE.replace("default allow = false\n", ""))
    decision = no_default.evaluate(OTHER)
    assert not decision.allowed and "undefined" in decision.reason and "deny" in decision.reason
    assert compile_rego(ISSUE_MODULE).evaluate({}).allowed is False


def test_is_compliant_is_policy_controllers_rule_and_may_be_an_object():
    module = """package sigstore
isCompliant = {"result": false, "error": "too old", "warning": "check the date"} { input.age > 30 }
isCompliant = {"result": true, "error": "", "warning": "fresh"} { input.age <= 30 }
allow = true
"""
    rego = compile_rego(module)
    assert rego.rule == "isCompliant"  # isCompliant wins over allow when both exist
    fresh = rego.evaluate({"age": 3})
    assert fresh.allowed and fresh.warning == "fresh"
    old = rego.evaluate({"age": 40})
    assert not old.allowed and "too old" in old.reason


@pytest.mark.parametrize("value", ['"yes"', "1", '["true"]', "null"])
def test_anything_but_true_denies(value):
    assert not compile_rego(f"package sigstore\nallow = {value}\n").evaluate({}).allowed


def test_evaluation_errors_deny():
    conflict = compile_rego("package sigstore\nallow := true { input.a }\nallow := false { input.b }\n")
    decision = conflict.evaluate({"a": True, "b": True})
    assert not decision.allowed and "evaluation" in decision.reason


def test_compile_errors_point_at_the_line():
    with pytest.raises(RegoError) as info:
        compile_rego("package sigstore\n\nallow {\n  input.x ==\n}\n")
    assert (info.value.line, info.value.column) == (4, 11)
    assert "Invalid boolean operator" in info.value.message


def test_compile_errors_print_nothing(capfd):
    with pytest.raises(RegoError):
        compile_rego("package sigstore\nallow {\n input.x == == 1\n}\n")
    assert capfd.readouterr().out == ""


def test_compiled_modules_are_cached():
    assert compile_rego(ISSUE_MODULE) is compile_rego(ISSUE_MODULE)
