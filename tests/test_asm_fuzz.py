"""Bad input never escapes as anything but AsmError (no traceback, no hang)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asm_strategies import programs
from pybpf.asm import assemble, disassemble
from pybpf.errors import AsmError

ALPHABET = st.sampled_from(list("rw%0123456789abcdefx+-*=()[]<>&|^s,:;# \tlu\n") + ["ll", "goto", "if", "lock"])


def _try(text: str, syntax: str) -> None:
    try:
        assemble(text, source="fuzz", syntax=syntax)
    except AsmError as e:
        assert e.source == "fuzz"
        assert str(e)


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=40), st.sampled_from(["auto", "llvm", "conformance"]))
def test_random_text_only_raises_asm_error(pieces, syntax):
    _try("".join(pieces), syntax)


@st.composite
def mutated_listing(draw):
    insns = draw(programs(max_insns=6))
    style = draw(st.sampled_from(["llvm", "pybpf", "kernel"]))
    text = "\n".join(disassemble(insns, style=style))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = draw(ALPHABET)
        if kind == "insert":
            text = text[:pos] + ch + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + 1:]
        else:
            text = text[:pos] + ch + text[pos + 1:]
    return text


@settings(max_examples=400, deadline=None)
@given(mutated_listing(), st.sampled_from(["auto", "llvm", "conformance"]))
def test_mutated_listings_only_raise_asm_error(text, syntax):
    _try(text, syntax)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None)
@given(mutated_listing(), st.sampled_from(["auto", "llvm", "conformance"]))
def test_mutated_listings_long(text, syntax):
    _try(text, syntax)
