"""What a compiled step's optimised program is: a fingerprint of its HLO text, its fusions, a
histogram of its operations and the bytes each kind of collective moves, so that a regression can
be explained by what changed in the program (`program_diff`), or put down to the runtime or the
machine where the program is the same.

Read from `compiled.as_text()`, the optimised HLO module. The operations counted are those of
every computation, inside fusions too (where a transpose or a copy the compiler added would be),
parameters left out; `fusions` counts the fusion operations. A collective's bytes are those of its
result (all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute, each also in its
asynchronous `-start` form).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
               "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
"""Bytes per element of HLO's element types (the 8-bit floats are `f8...`: 1)."""

_METADATA = re.compile(r", metadata=\{[^}]*\}|/\*index=\d+\*/")
"""Source positions and printing aids: not a part of the program."""
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s([a-z][\w\-]*)\(")
_ARRAY = re.compile(r"\b([a-z]+\d*(?:e\d+m\d+\w*)?)\[([\d,]*)\]")


def _array_bytes(shape: str) -> int:
    """Bytes of the arrays in an HLO result shape (one array, or a tuple of them)."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        size = DTYPE_BYTES.get(dtype, 1 if dtype.startswith("f8") else 4)
        for dim in filter(None, dims.split(",")):
            size *= int(dim)
        total += size
    return total


def program_summary(hlo_text: str) -> dict:
    """{"fingerprint": 16 hex digits of the SHA-256 of the text without its metadata (source
    positions), "fusions": count, "ops": {op: count}, "collective_bytes": {kind: bytes}} of an
    optimised HLO module's text."""
    program = _METADATA.sub("", hlo_text)
    ops, collective_bytes = Counter(), Counter()
    for line in program.splitlines():
        instruction = _INSTRUCTION.match(line)
        if instruction is None or instruction.group(2) == "parameter":
            continue
        shape, op = instruction.groups()
        ops[op] += 1
        kind = op.removesuffix("-start")
        if kind in COLLECTIVES and not op.endswith("-done"):
            collective_bytes[kind] += _array_bytes(shape)
    return {"fingerprint": hashlib.sha256(program.encode()).hexdigest()[:16], "fusions": ops["fusion"],
            "ops": dict(sorted(ops.items())), "collective_bytes": dict(sorted(collective_bytes.items()))}


def program_text(compiled) -> str | None:
    """The optimised HLO text of a `jax.stages.Compiled`, None where the backend gives none."""
    try:
        return compiled.as_text()
    except Exception:  # noqa: BLE001 (a backend without the text: the program is then unknown)
        return None


def combined(programs: list[dict | None]) -> dict | None:
    """One summary of a step made of several compiled pieces (`jit`: the per-example function and
    the update): fingerprints joined, counts summed; None where any piece's is unknown."""
    if not programs or any(program is None for program in programs):
        return None
    if len(programs) == 1:
        return programs[0]
    ops, collectives = Counter(), Counter()
    for program in programs:
        ops.update(program["ops"])
        collectives.update(program["collective_bytes"])
    fingerprint = hashlib.sha256("".join(p["fingerprint"] for p in programs).encode()).hexdigest()[:16]
    return {"fingerprint": fingerprint, "fusions": sum(p["fusions"] for p in programs),
            "ops": dict(sorted(ops.items())), "collective_bytes": dict(sorted(collectives.items()))}


def _mib(count: int) -> str:
    return f"{count / 2**20:+.3g} MiB" if abs(count) >= 2**20 else f"{count:+d} B"


def program_diff(base: dict | None, head: dict | None, most: int = 6) -> str:
    """What changed between two programs, in words: "same program" where the fingerprints agree,
    else the fusions' count, each collective's bytes and the `most` largest changes of an op's
    count, e.g. "fusions 41 -> 47; all-gather +12 MiB; copy +6". Empty where either is unknown."""
    if not base or not head:
        return ""
    if base["fingerprint"] == head["fingerprint"]:
        return "same program"
    parts = [f"fusions {base['fusions']} -> {head['fusions']}"] if base["fusions"] != head["fusions"] else []
    for kind in sorted(set(base["collective_bytes"]) | set(head["collective_bytes"])):
        change = head["collective_bytes"].get(kind, 0) - base["collective_bytes"].get(kind, 0)
        if change:
            parts.append(f"{kind} {_mib(change)}")
    changes = {op: head["ops"].get(op, 0) - base["ops"].get(op, 0)
               for op in set(base["ops"]) | set(head["ops"]) if op != "fusion"}
    largest = sorted((item for item in changes.items() if item[1]), key=lambda item: (-abs(item[1]), item[0]))
    parts += [f"{op} {change:+d}" for op, change in largest[:most]]
    return "; ".join(parts) or "a different program with the same operations"
