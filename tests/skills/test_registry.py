"""The @skill registry: registration fails loudly at import time, and external skill packs load through the
`agentml.skills` entry point group (a real installed-distribution layout, loaded in a fresh interpreter)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from skills import SkillContext
from skills.errors import SkillError, SkillRegistrationError
from skills.registry import Registry, load_registry, skill, spec_of


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")
    y: int


class Loose(BaseModel):
    x: int


def test_a_valid_skill_registers_with_its_schema() -> None:
    reg = Registry()

    @skill(registry=reg, tags=("demo",))
    def double(ctx: SkillContext, inp: In) -> Out:
        """Double x."""
        return Out(y=2 * inp.x)

    spec = reg.get("double")
    assert spec.schema()["input_schema"]["properties"]["x"]["type"] == "integer"
    assert spec.description == "Double x." and double(None, In(x=2)) == Out(y=4)  # the function stays callable


def test_registration_errors_say_what_to_fix() -> None:
    reg = Registry()
    with pytest.raises(SkillRegistrationError, match="docstring"):
        @skill(registry=reg)
        def undocumented(ctx: SkillContext, inp: In) -> Out:
            return Out(y=inp.x)
    with pytest.raises(SkillRegistrationError, match="must forbid unknown fields") as err:
        @skill(registry=reg)
        def loose(ctx: SkillContext, inp: Loose) -> Out:
            """Loose input."""
            return Out(y=inp.x)
    assert 'extra="forbid"' in err.value.hint
    with pytest.raises(SkillRegistrationError, match=r"exactly \(ctx, inp\)"):
        @skill(registry=reg)
        def three(ctx: SkillContext, inp: In, extra: int) -> Out:
            """Too many parameters."""
            return Out(y=extra)
    with pytest.raises(SkillRegistrationError, match="pydantic model"):
        @skill(registry=reg)
        def untyped_output(ctx: SkillContext, inp: In) -> dict:
            """Returns a dict."""
            return {}
    assert len(reg) == 0


def test_unknown_skill_suggests_a_close_name() -> None:
    with pytest.raises(SkillError) as err:
        load_registry().get("train_xgbost")
    assert "train_xgboost" in err.value.hint


def test_the_builtin_library_is_registered() -> None:
    names = set(load_registry().names())
    assert {"query", "features", "train_xgboost", "tune", "evaluate", "explain", "residuals", "report"} <= names


def test_there_is_no_global_registry() -> None:
    """@skill only declares; each load_registry() builds a registry of its own, so what one caller adds cannot
    leak into another's."""
    @skill()
    def stray(ctx: SkillContext, inp: In) -> Out:
        """Declared in a test, in no library module."""
        return Out(y=inp.x)

    first, second = load_registry(), load_registry()
    assert spec_of(stray).name == "stray" and "stray" not in first
    first.add(spec_of(stray))
    assert "stray" in first and "stray" not in second and first is not second
    with pytest.raises(SkillError, match="not a skill"):
        spec_of(len)


def _pack(site: Path, module: str, body: str) -> None:
    """An installed distribution `demo-pack` whose entry point in `agentml.skills` names `module`."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / "demo_pack-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-pack\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[agentml.skills]\ndemo = {module}\n")


def _load_registry(site: Path) -> subprocess.CompletedProcess[str]:
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from skills.registry import load_registry; "
            "print(json.dumps(load_registry().names()))")
    return subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])


def test_an_installed_skill_pack_registers_through_the_entry_point(tmp_path: Path) -> None:
    _pack(tmp_path, "demo_pack_skills", '''
        from pydantic import BaseModel, ConfigDict
        from skills import SkillContext
        from skills.registry import skill

        class In(BaseModel):
            model_config = ConfigDict(extra="forbid")
            rows: int

        class Out(BaseModel):
            model_config = ConfigDict(extra="forbid")
            ok: bool

        @skill()
        def profile_rows(ctx: SkillContext, inp: In) -> Out:
            """Say whether a table has rows (an external skill pack's skill)."""
            return Out(ok=inp.rows > 0)
    ''')
    done = _load_registry(tmp_path)
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout.strip().splitlines()[-1])
    assert "profile_rows" in names and "train_xgboost" in names


def test_a_skill_pack_without_skills_is_named(tmp_path: Path) -> None:
    _pack(tmp_path, "empty_pack_skills", "VERSION = 1\n")
    done = _load_registry(tmp_path)
    assert done.returncode != 0 and "skill pack 'demo'" in done.stderr and "no @skill functions" in done.stderr


def test_a_broken_skill_pack_is_named(tmp_path: Path) -> None:
    _pack(tmp_path, "broken_pack_skills", "raise ImportError('needs a library that is not installed')\n")
    done = _load_registry(tmp_path)
    assert done.returncode != 0
    assert "skill pack 'demo'" in done.stderr and "needs a library that is not installed" in done.stderr
