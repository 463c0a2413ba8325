"""The factor specification is the one source of the factor tables, and generator/ imports one way."""

import ast
from pathlib import Path

import numpy as np

from generator import config, editing, factors
from generator.diffusion import prompts
from generator.factor_spec import (
    FACTORS,
    IMAGE,
    LATENT,
    LATENT_FACTORS,
    PROMPT_FACTOR_SPECS,
    prompt_factors,
)

GENERATOR = Path(__file__).resolve().parents[2] / "generator"


def test_every_image_factor_names_a_pixel_operation_that_keeps_the_shape():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for name, spec in FACTORS.items():
        if spec.kind != IMAGE:
            continue
        assert factors.APPLY[name].__name__ == spec.apply
        level = spec.minimum + (spec.maximum - spec.minimum) / 2
        out = factors.apply_factor(image, name, round(level) if spec.integer else level, 1)
        assert out.shape == image.shape and out.dtype == np.uint8


def test_every_latent_edit_names_a_sensor_it_may_move_and_holds_the_rest():
    for name in LATENT_FACTORS:
        spec = FACTORS[name]
        assert spec.kind == LATENT and spec.sensor in spec.affects
        held = spec.held(editing.HELD_DIRECTIONS)
        assert spec.sensor not in held
        assert set(held) == set(editing.HELD_DIRECTIONS) - spec.affects


def test_the_old_tables_are_derived_from_the_specification():
    assert config.FACTORS is FACTORS and config.LATENT_FACTORS == LATENT_FACTORS
    assert editing.AFFECTS == {n: s.affects for n, s in FACTORS.items()}
    assert list(prompts.PROMPT_FACTORS) == list(PROMPT_FACTOR_SPECS)
    assert prompts.SLOTS == ("subject", *PROMPT_FACTOR_SPECS, "framing")
    for name, spec in PROMPT_FACTOR_SPECS.items():
        assert prompts.BASELINE_LEVELS[name] == spec.baseline
        assert spec.baseline not in prompt_factors()[name]
        for level in spec.levels:
            assert editing.prompt_affects(name, level) == spec.affected(level)
        for level, target in spec.targets.items():
            assert level in spec.levels and editing.PROMPT_TARGETS[(name, level)] is target


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """generator modules that ``path`` imports anywhere (inside functions too)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                         for a in node.names)
    return (found & known) - {module}


def test_no_generator_module_imports_one_that_imports_it_back():
    paths = {}
    for path in GENERATOR.rglob("*.py"):
        parts = path.relative_to(GENERATOR.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: _imports(p, m, set(paths)) for m, p in paths.items()}
    # Depth-first search for a back edge; report the first cycle found.
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*trail[trail.index(n):], n] if n in trail else [*trail, n]
            if n not in state and (cycle := visit(n, [*trail, n])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m, [m])
            assert cycle is None, " -> ".join(cycle)
