"""The filter/goodness expression evaluator: grammar, namespaces, errors and safety."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cinderblock.scheduler.evaluator import (
    MAX_DEPTH,
    MAX_LENGTH,
    EvaluationError,
    EvaluatorError,
    ExpressionSyntaxError,
    UnknownVariable,
    compile_expression,
    evaluate,
)

NS: dict[str, Any] = {
    "volume": {"size": 10, "volume_type_id": "t-1", "multiattach": False},
    "capabilities": {
        "storage_protocol": "iSCSI",
        "thin_provisioning_support": True,
        "total_capacity_gb": 100.0,
        "free_capacity_gb": "40",
        "ratio": "infinite",
        "nested": {"tier": "gold", "level": 3},
        "protocols": ["iSCSI", "FC"],
        "nothing": None,
    },
    "stats": {"free_capacity_gb": 40, "host": "h@b#p"},
    "qos": {"read_iops_sec": "1000"},
    "extra": {"tier": "gold"},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # numbers and arithmetic precedence
        ("1", 1),
        ("1.5", 1.5),
        (".5 + 1e2", 100.5),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("2 * 3 / 4", 1.5),
        ("100 / 10 / 5", 2),
        ("7 % 4", 3),
        ("2 ^ 10", 1024),
        ("2 ^ 3 ^ 2", 512),  # right-associative
        ("-2 ^ 2", -4),  # power binds tighter than the sign
        ("2 ^ -1", 0.5),
        ("- -3", 3),
        ("+4", 4),
        ("1 + 2 * 3 ^ 2", 19),
        ("1" + " + 1" * 200, 201),  # long flat chains are fine
        # comparisons
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 4", False),
        ("4 >= 5", False),
        ("1 == 1.0", True),
        ("1 != 1", False),
        ("1 <> 2", True),
        ("1 + 1 == 2", True),
        ("'abc' < 'abd'", True),
        ("'10' > '9'", True),  # numeric strings compare as numbers
        ("'iSCSI' == \"iSCSI\"", True),
        # logic, both spellings; not is below comparison
        ("true and false", False),
        ("true && true", True),
        ("false or true", True),
        ("false || false", False),
        ("not false", True),
        ("!true", False),
        ("not 1 == 2", True),
        ("! 1 > 2 and 3 > 2", True),
        ("True AND NOT False", True),
        ("1 or 1 / 0", True),  # short-circuit
        ("0 and 1 / 0", False),
        ("1 < 2 == 1", True),  # chained: (1 < 2) == 1
        # ternary
        ("1 ? 2 : 3", 2),
        ("0 ? 2 : 3", 3),
        ("1 > 2 ? 10 : 2 > 1 ? 20 : 30", 20),
        ("true ? false ? 1 : 2 : 3", 2),
        ("(1 ? 2 : 3) + 1", 3),
        ("0 ? 1 / 0 : 5", 5),
        # functions
        ("abs(-3)", 3),
        ("max(1, 5, 3)", 5),
        ("min(4, 2, 8)", 2),
        ("max(volume.size, 20) - min(1, 2)", 19),
        ("abs(min(-1, -2))", 2),
        # namespaces
        ("volume.size", 10),
        ("volume.size * 2 + 1", 21),
        ("volume.volume_type_id == 't-1'", True),
        ("volume.multiattach", False),
        ("capabilities.storage_protocol == 'iSCSI'", True),
        ("capabilities.thin_provisioning_support", True),
        ("capabilities.free_capacity_gb > 30", True),  # numeric string
        ("capabilities.free_capacity_gb / capabilities.total_capacity_gb * 100", 40),
        ("capabilities.nested.tier == 'gold'", True),
        ("capabilities.nested.level + 1", 4),
        ("capabilities.nothing == capabilities.nothing", True),
        ("stats.free_capacity_gb - volume.size", 30),
        ("stats.host", "h@b#p"),
        ("qos.read_iops_sec >= 1000", True),
        ("extra.tier == 'gold' ? 100 : 50", 100),
        ("capabilities.thin_provisioning_support == true", True),
    ],
)
def test_evaluates(expression: str, expected: Any) -> None:
    assert evaluate(expression, NS) == expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        # syntax
        ("", ExpressionSyntaxError),
        ("   ", ExpressionSyntaxError),
        ("1 +", ExpressionSyntaxError),
        ("(1 + 2", ExpressionSyntaxError),
        ("1 + 2)", ExpressionSyntaxError),
        ("1 2", ExpressionSyntaxError),
        ("1 ? 2", ExpressionSyntaxError),
        ("a = 1", ExpressionSyntaxError),
        ("'unterminated", ExpressionSyntaxError),
        ("1 $ 2", ExpressionSyntaxError),
        ("max()", ExpressionSyntaxError),
        ("abs(1, 2)", ExpressionSyntaxError),
        ("pow(2, 3)", ExpressionSyntaxError),
        ("1 + + ", ExpressionSyntaxError),
        # names
        ("size", UnknownVariable),
        ("volume", UnknownVariable),
        ("volume.color", UnknownVariable),
        ("other.size", UnknownVariable),
        ("capabilities.nested.tier.deeper", UnknownVariable),
        ("max", UnknownVariable),
        # arithmetic
        ("1 / 0", EvaluationError),
        ("5 % 0", EvaluationError),
        ("volume.size / (stats.free_capacity_gb - 40)", EvaluationError),
        ("10 ^ 400", EvaluationError),
        ("(-8) ^ 0.5", EvaluationError),
        ("'abc' + 1", EvaluationError),
        ("capabilities.storage_protocol * 2", EvaluationError),
        ("capabilities.storage_protocol > 2", EvaluationError),
        ("capabilities.nothing + 1", EvaluationError),
        ("capabilities.protocols == 1", EvaluationError),  # lists are not values
        ("capabilities.nested + 1", EvaluationError),
        ("abs('x')", EvaluationError),
    ],
)
def test_errors(expression: str, error: type[EvaluatorError]) -> None:
    with pytest.raises(error):
        evaluate(expression, NS)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "volume.__class__",
        "volume.__class__.__mro__",
        "capabilities._private",
        "().__class__.__bases__[0].__subclasses__()",
        "open('/etc/passwd')",
        "eval('1')",
        "exec('x = 1')",
        "lambda: 1",
        "[1, 2]",
        "{'a': 1}",
        "volume['size']",
        "volume.size.real",
        "volume.size if 1 else 2",
        "1; 2",
        "`id`",
        "'a' 'b'",
        "f'{1}'",
        "1 if True else 0",
        "print(1)",
    ],
)
def test_no_way_into_python(expression: str) -> None:
    with pytest.raises(EvaluatorError):
        evaluate(expression, NS)


def test_only_mapping_keys_are_reachable() -> None:
    class Sneaky:
        secret = 42

    with pytest.raises(UnknownVariable):
        evaluate("capabilities.obj.secret", {"capabilities": {"obj": Sneaky()}})


def test_length_limit() -> None:
    just_fits = "1" + " " * (MAX_LENGTH - 1)
    assert evaluate(just_fits, {}) == 1
    with pytest.raises(ExpressionSyntaxError, match="longer"):
        evaluate(just_fits + " ", {})
    with pytest.raises(ExpressionSyntaxError, match="longer"):
        evaluate("1" + "+1" * 100_000, {})


@pytest.mark.parametrize(
    "template",
    ["({}1{})", "-{}1{}", "not {}1{}", "abs({}1{})", "1 ? {}1{} : 0", "1 ^ {}1{}"],
)
def test_nesting_limit(template: str) -> None:
    def nest(depth: int) -> str:
        text = "1"
        for _ in range(depth):
            text = template.replace("{}1{}", text)
        return text

    assert evaluate(nest(MAX_DEPTH // 2), {}) is not None
    with pytest.raises(ExpressionSyntaxError, match="nested"):
        evaluate(nest(MAX_DEPTH + 1), {})
    with pytest.raises(ExpressionSyntaxError):
        evaluate(nest(400)[:MAX_LENGTH], {})  # deep and long: refused, never a crash


def test_deep_nesting_in_a_small_thread_stack() -> None:
    """Refusals come from the limit, not from the interpreter running out of stack."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(evaluate("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH, {}))
        except EvaluatorError as err:
            outcome.append(err)

    old = threading.stack_size(256 * 1024)
    try:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join()
    finally:
        threading.stack_size(old)
    assert len(outcome) == 1


def test_parse_is_cached_and_reusable() -> None:
    tree = compile_expression("volume.size * 2")
    assert compile_expression("volume.size * 2") is tree
    assert evaluate("volume.size * 2", {"volume": {"size": 3}}) == 6
    assert evaluate("volume.size * 2", {"volume": {"size": 4}}) == 8


def test_errors_are_value_errors() -> None:
    """Callers may catch ValueError; nothing else escapes."""
    assert issubclass(EvaluatorError, ValueError)
    with pytest.raises(ValueError):
        evaluate("1 +", {})
