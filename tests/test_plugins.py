"""Plugin discovery and registries: entry points, local plugins, failures and selection."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import logging
import os
import subprocess
import sys
import types

import pytest
from torch import nn

import sslkit.plugins as plugins_mod
from sslkit import hookimpl
from sslkit.errors import DuplicateNameError, PluginError, UnknownNameError
from sslkit.factory import create_backbone
from sslkit.interfaces import Backbone, Config, Stage
from sslkit.plugins import Selection, load_plugins

# --------------------------------------------------------------------------- helpers


class TinyConfig(Config):
    channels: int = 4


class TinyBackbone(Backbone):
    """A throwaway one-stage backbone for local-plugin tests."""

    Config = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.blocks["block1"] = nn.Conv2d(3, config.channels, 3, padding=1)
        self.stages = (Stage("block1", config.channels, 1),)


class OtherBackbone(TinyBackbone):
    pass


def _record(plugins, name):
    matches = [r for r in plugins.records if r.name == name]
    assert len(matches) == 1, [vars(r) for r in plugins.records]
    return matches[0]


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def _no_env_selection(monkeypatch):
    monkeypatch.delenv("SSLKIT_PLUGINS", raising=False)


@pytest.fixture(scope="module")
def loaded():
    return load_plugins(selection="")


# --------------------------------------------------------------------------- entry points


def test_builtins_and_rotation_load_from_entry_points(loaded):
    assert "rotation" in loaded.tasks
    assert {"nin", "resnet18"} <= set(loaded.backbones.names())
    assert {"cifar10", "sample"} <= set(loaded.datasets.names())
    assert {"linear", "mlp"} <= set(loaded.probes.names())
    assert all(r.status == "loaded" for r in loaded.records), [vars(r) for r in loaded.records]


def test_provider_distribution_recorded(loaded):
    rot = loaded.tasks.entry("rotation").provider
    assert rot.plugin == "rotation"
    assert rot.distribution == "sslkit-rotation"
    assert rot.version
    nin = loaded.backbones.entry("nin").provider
    assert nin.distribution == "sslkit"
    assert nin.version
    assert loaded.datasets.entry("sample").provider.distribution == "sslkit"
    assert loaded.probes.entry("linear").provider.distribution == "sslkit"
    assert _record(loaded, "rotation").distribution == "sslkit-rotation"
    versions = loaded.versions()
    assert versions["rotation"].startswith("sslkit-rotation ")


# --------------------------------------------------------------------------- local plugins


class LocalPlugin:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("tiny", TinyBackbone)


def test_local_plugin_class_registers_backbone():
    plugins = load_plugins(extra=[LocalPlugin], entry_points=False)
    assert plugins.backbones.names() == ["tiny"]
    assert _record(plugins, "LocalPlugin").status == "loaded"
    assert plugins.backbones.entry("tiny").provider.plugin == "LocalPlugin"
    model = create_backbone("tiny", plugins, channels=6)
    assert isinstance(model, TinyBackbone)
    assert model.config.channels == 6
    import torch

    out = model(torch.zeros(2, 3, 8, 8))
    assert out["block1"].shape == (2, 6, 8, 8)


def test_local_plugin_module():
    mod = types.ModuleType("my_local_plugin")

    @hookimpl
    def register_backbones(register):
        register("tiny_mod", TinyBackbone)

    mod.register_backbones = register_backbones
    plugins = load_plugins(extra=[mod], entry_points=False)
    assert "tiny_mod" in plugins.backbones
    assert _record(plugins, "my_local_plugin").status == "loaded"
    assert isinstance(create_backbone("tiny_mod", plugins), TinyBackbone)


def test_local_plugin_alongside_entry_points():
    plugins = load_plugins(selection="", extra=[LocalPlugin])
    assert {"nin", "resnet18", "tiny"} <= set(plugins.backbones.names())
    assert "rotation" in plugins.tasks


# --------------------------------------------------------------------------- duplicates


class DupA:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("dup", TinyBackbone)


class DupB:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("dup", OtherBackbone)


class DupC:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("dup", TinyBackbone)
        register("unique_c", TinyBackbone)


def test_duplicate_name_is_a_conflict_naming_both_plugins(caplog):
    """pytest's model: both plugins load, the name is unusable, everything else works."""
    caplog.set_level(logging.WARNING)
    plugins = load_plugins(extra=[DupA, DupB, DupC], entry_points=False)
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "'dup'" in warnings[0] and all(f"plugin '{p}'" in warnings[0] for p in ("DupA", "DupB", "DupC"))
    assert "--plugins -DupA" in warnings[0]
    assert all(_record(plugins, p).status == "loaded" for p in ("DupA", "DupB", "DupC"))
    assert plugins.backbones.names() == ["unique_c"]  # neither 'dup' wins, the others work
    assert "dup" in plugins.backbones  # registered, so callers reach get() and its error
    with pytest.raises(DuplicateNameError) as info:
        plugins.backbones.get("dup")
    msg = str(info.value)
    assert msg == warnings[0] and "\n" not in msg
    assert list(plugins.backbones.conflicts()) == ["dup"]
    assert [p.plugin for p in plugins.backbones.conflicts()["dup"]] == ["DupA", "DupB", "DupC"]
    with pytest.raises(DuplicateNameError, match="DupA"):
        create_backbone("dup", plugins)


def test_duplicate_of_builtin_names_both_plugins():
    class ShadowNin:
        @staticmethod
        @hookimpl
        def register_backbones(register):
            register("nin", TinyBackbone)

    plugins = load_plugins(selection="", extra=[ShadowNin])
    assert "resnet18" in plugins.backbones.names() and "nin" not in plugins.backbones.names()
    with pytest.raises(DuplicateNameError) as info:
        plugins.backbones.get("nin")
    msg = str(info.value)
    assert "ShadowNin" in msg
    assert "backbones" in msg and "sslkit" in msg  # the built-in entry point and its distribution


def test_plugin_that_exits_in_a_hook_is_skipped(caplog):
    class Quitter:
        @staticmethod
        @hookimpl
        def register_backbones(register):
            register("quit", TinyBackbone)
            raise SystemExit(4)

    caplog.set_level(logging.WARNING)
    plugins = load_plugins(extra=[Quitter, LocalPlugin], entry_points=False)
    assert _record(plugins, "Quitter").status == "failed"
    assert "sys.exit(4)" in _record(plugins, "Quitter").error
    assert plugins.backbones.names() == ["tiny"]
    assert any("Quitter" in w and "sys.exit(4)" in w for w in _warnings(caplog))


def test_plugin_that_exits_at_import_is_skipped(monkeypatch, caplog):
    real = plugins_mod._entry_points()
    fake = md.EntryPoint(name="quitter", value="quitter_mod_xyz", group="sslkit")
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: sorted([*real, fake], key=lambda e: e.name))
    monkeypatch.setattr(
        md.EntryPoint, "load", lambda ep: sys.exit(5) if ep.name == "quitter" else importlib.import_module(ep.value)
    )
    caplog.set_level(logging.WARNING)
    plugins = load_plugins(selection="")
    assert _record(plugins, "quitter").status == "failed"
    assert [w for w in _warnings(caplog) if "quitter" in w and "sys.exit(5)" in w]
    assert "rotation" in plugins.tasks


def test_keyboard_interrupt_is_not_swallowed():
    class Interrupted:
        @staticmethod
        @hookimpl
        def register_backbones(register):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_plugins(extra=[Interrupted], entry_points=False)


# --------------------------------------------------------------------------- unknown names


def test_unknown_name_suggests(loaded):
    with pytest.raises(UnknownNameError) as info:
        loaded.tasks.get("rotaton")
    msg = str(info.value)
    assert "did you mean 'rotation'" in msg
    assert "rotaton" in msg
    with pytest.raises(KeyError):  # UnknownNameError is also a KeyError
        loaded.backbones.get("resnet81")
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        create_backbone("resnet81", loaded)


def test_unknown_name_without_close_match(loaded):
    with pytest.raises(UnknownNameError) as info:
        loaded.probes.get("zzzzzz")
    msg = str(info.value)
    assert "did you mean" not in msg
    assert "linear" in msg and "mlp" in msg


# --------------------------------------------------------------------------- broken plugins


def test_broken_entry_point_is_skipped_with_warning(monkeypatch, caplog):
    real = plugins_mod._entry_points()
    fake = md.EntryPoint(name="broken", value="no_such_module_xyz", group="sslkit")
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: sorted([*real, fake], key=lambda e: e.name))
    caplog.set_level(logging.WARNING)
    plugins = load_plugins(selection="")
    warnings = [w for w in _warnings(caplog) if "broken" in w]
    assert len(warnings) == 1, _warnings(caplog)
    assert "no_such_module_xyz" in warnings[0]
    assert "SSLKIT_PLUGINS='-broken'" in warnings[0]
    rec = _record(plugins, "broken")
    assert rec.status == "failed"
    assert rec.error and "import" in rec.error
    # the others still load
    assert "rotation" in plugins.tasks
    assert {"nin", "resnet18"} <= set(plugins.backbones.names())
    assert {"cifar10", "sample"} <= set(plugins.datasets.names())
    assert "broken" not in plugins.versions()
    # an unknown name mentions the plugin that failed
    with pytest.raises(UnknownNameError) as info:
        plugins.tasks.get("no_such_task")  # not "jigsaw": CI installs the jigsaw example
    assert "broken" in str(info.value)


def test_broken_entry_point_can_be_disabled(monkeypatch, caplog):
    real = plugins_mod._entry_points()
    fake = md.EntryPoint(name="broken", value="no_such_module_xyz", group="sslkit")
    monkeypatch.setattr(plugins_mod, "_entry_points", lambda: [*real, fake])
    caplog.set_level(logging.WARNING)
    plugins = load_plugins(selection="-broken")
    assert _record(plugins, "broken").status == "disabled"
    assert not _warnings(caplog)


class Misspelt:
    @staticmethod
    @hookimpl
    def register_backbone(register):  # singular: not a sslkit hook
        register("misspelt", TinyBackbone)


def test_misspelt_hook(caplog):
    caplog.set_level(logging.WARNING)
    plugins = load_plugins(extra=[Misspelt], entry_points=False)
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "Misspelt" in warnings[0]
    assert "register_backbone" in warnings[0]
    assert "did you mean 'register_backbones'" in warnings[0]
    rec = _record(plugins, "Misspelt")
    assert rec.status == "failed"
    assert "register_backbones" in rec.error
    assert "misspelt" not in plugins.backbones
    assert len(plugins.backbones) == 0


class Raises:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("raises_good", TinyBackbone)
        raise RuntimeError("boom in plugin")


class NotABackbone:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("nab_good", TinyBackbone)
        register("nab_bad", nn.Linear)  # an nn.Module, but not a sslkit Backbone


class InstanceNotClass:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("inst", TinyBackbone(TinyConfig()))


@pytest.mark.parametrize(
    "plugin, needle, names",
    [
        (Raises, "boom in plugin", ["raises_good"]),
        (NotABackbone, "nab_bad", ["nab_good", "nab_bad"]),
        (InstanceNotClass, "inst", ["inst"]),
    ],
)
def test_bad_register_hook_skips_plugin(caplog, plugin, needle, names):
    caplog.set_level(logging.WARNING)
    plugins = load_plugins(extra=[LocalPlugin, plugin], entry_points=False)
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert plugin.__name__ in warnings[0]
    assert needle in warnings[0]
    assert "register_backbones" in warnings[0]
    rec = _record(plugins, plugin.__name__)
    assert rec.status == "failed"
    assert needle in rec.error
    for name in names:  # nothing of the failed plugin is registered, not even its valid part
        assert name not in plugins.backbones
    # the good plugin is unaffected
    assert plugins.backbones.names() == ["tiny"]
    assert _record(plugins, "LocalPlugin").status == "loaded"
    with pytest.raises(UnknownNameError, match=plugin.__name__):
        plugins.backbones.get(names[0])


class BadDatasetLoader:
    @staticmethod
    @hookimpl
    def register_datasets(register):
        register("not_callable", 42)


def test_dataset_that_is_not_callable_is_skipped(caplog):
    caplog.set_level(logging.WARNING)
    plugins = load_plugins(extra=[BadDatasetLoader], entry_points=False)
    assert _record(plugins, "BadDatasetLoader").status == "failed"
    assert "not_callable" not in plugins.datasets
    assert any("BadDatasetLoader" in w for w in _warnings(caplog))


class TasksRaiseBackbonesFine:
    @staticmethod
    @hookimpl
    def register_pretext_tasks(register):
        raise RuntimeError("task hook broke")

    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("half_loaded", TinyBackbone)


class BackbonesFineDatasetsRaise:
    @staticmethod
    @hookimpl
    def register_backbones(register):
        register("half_loaded2", TinyBackbone)

    @staticmethod
    @hookimpl
    def register_datasets(register):
        raise RuntimeError("dataset hook broke")


@pytest.mark.parametrize(
    "plugin, name", [(TasksRaiseBackbonesFine, "half_loaded"), (BackbonesFineDatasetsRaise, "half_loaded2")]
)
def test_failed_plugin_registers_nothing_from_any_hook(caplog, plugin, name):
    caplog.set_level(logging.WARNING)
    plugins = load_plugins(extra=[plugin], entry_points=False)
    assert _record(plugins, plugin.__name__).status == "failed"
    assert name not in plugins.backbones


# --------------------------------------------------------------------------- selection


def test_selection_parse():
    s = Selection.parse(None)
    assert s.only is None and s.disabled == frozenset()
    assert Selection.parse("") == s
    assert Selection.parse("  ") == s
    s = Selection.parse("-rotation")
    assert s.only is None and s.disabled == {"rotation"}
    s = Selection.parse("no:rotation")
    assert s.only is None and s.disabled == {"rotation"}
    s = Selection.parse("none")
    assert s.only == frozenset() and s.disabled == frozenset()
    s = Selection.parse("rotation, jigsaw ,")
    assert s.only == {"rotation", "jigsaw"} and s.disabled == frozenset()
    s = Selection.parse("rotation,-jigsaw")
    assert s.only == {"rotation"} and s.disabled == {"jigsaw"}


def test_selection_of_unknown_plugin_is_an_error():
    with pytest.raises(PluginError) as info:
        load_plugins(selection="rotaton")
    msg = str(info.value)
    assert "'rotaton'" in msg and "did you mean 'rotation'?" in msg and "backbones" in msg
    with pytest.raises(PluginError, match="did you mean 'rotation'"):
        load_plugins(selection="-rotaton")
    with pytest.raises(PluginError, match="installed plugins: LocalPlugin"):
        load_plugins(selection="-nope", extra=[LocalPlugin], entry_points=False)


def test_disabled_builtin_is_named_in_unknown_name():
    plugins = load_plugins(selection="-backbones")
    with pytest.raises(UnknownNameError) as info:
        plugins.backbones.get("nin")
    assert "the built-in plugin 'backbones' is disabled by --plugins" in str(info.value)
    with pytest.raises(UnknownNameError, match="the plugin 'rotation' is disabled"):
        load_plugins(selection="none").tasks.get("rotation")


def test_selection_allows():
    s = Selection.parse("none")
    assert s.allows("backbones", builtin=True)
    assert not s.allows("rotation", builtin=False)
    s = Selection.parse("rotation")
    assert s.allows("rotation", builtin=False)
    assert not s.allows("jigsaw", builtin=False)
    assert s.allows("probes", builtin=True)
    s = Selection.parse("-rotation")
    assert not s.allows("rotation", builtin=False)
    assert s.allows("jigsaw", builtin=False)
    assert not Selection.parse("-probes").allows("probes", builtin=True)


def test_select_disable_rotation():
    plugins = load_plugins(selection="-rotation")
    assert _record(plugins, "rotation").status == "disabled"
    assert "rotation" not in plugins.tasks
    assert "nin" in plugins.backbones
    assert "rotation" not in plugins.versions()


def test_select_none_keeps_builtins():
    plugins = load_plugins(selection="none")
    loaded = [r for r in plugins.records if r.status == "loaded"]
    assert loaded and {r.distribution for r in loaded} == {"sslkit"}
    assert _record(plugins, "rotation").status == "disabled"
    assert len(plugins.tasks) == 0
    assert {"nin", "resnet18"} <= set(plugins.backbones.names())
    assert {"linear", "mlp"} <= set(plugins.probes.names())
    assert {"cifar10", "sample"} <= set(plugins.datasets.names())


def test_select_only_rotation():
    plugins = load_plugins(selection="rotation")
    assert _record(plugins, "rotation").status == "loaded"
    assert "rotation" in plugins.tasks
    assert {"nin", "resnet18"} <= set(plugins.backbones.names())
    assert all(r.status in ("loaded", "disabled") for r in plugins.records)
    # anything that is neither built-in nor selected is disabled
    for r in plugins.records:
        if r.distribution != "sslkit" and r.name != "rotation":
            assert r.status == "disabled"


def test_selection_from_environment(monkeypatch):
    monkeypatch.setenv("SSLKIT_PLUGINS", "-rotation")
    plugins = load_plugins()
    assert _record(plugins, "rotation").status == "disabled"
    assert "rotation" not in plugins.tasks
    monkeypatch.setenv("SSLKIT_PLUGINS", "none")
    plugins = load_plugins()
    assert len(plugins.tasks) == 0
    monkeypatch.setenv("SSLKIT_PLUGINS", "rotation")
    assert "rotation" in load_plugins().tasks
    # an explicit selection wins over the environment
    monkeypatch.setenv("SSLKIT_PLUGINS", "-rotation")
    assert "rotation" in load_plugins(selection="").tasks


# --------------------------------------------------------------------------- CLI


def test_cli_plugins_json(cli):
    proc = cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    records = {r["name"]: r for r in data["plugins"]}
    rot = records["rotation"]
    assert rot["distribution"] == "sslkit-rotation"
    assert rot["version"]
    assert rot["status"] == "loaded"
    rows = {(r["kind"], r["name"]): r for r in data["provides"]}
    assert rows[("pretext task", "rotation")]["distribution"] == "sslkit-rotation"
    assert rows[("pretext task", "rotation")]["version"] == rot["version"]
    assert rows[("backbone", "nin")]["distribution"] == "sslkit"


# --------------------------------------------------------------------------- exporters, recipes, hostile plugins


def test_export_formats_and_reproductions_are_registered_like_plugins(loaded):
    assert {"onnx", "torch", "safetensors"} <= set(loaded.exporters.names())
    assert loaded.exporters.entry("onnx").provider.distribution == "sslkit"
    assert loaded.recipes.entry("rotnet-cifar10").provider.distribution == "sslkit-rotation"
    assert loaded.recipes.entry("context-cifar10").provider.distribution == "sslkit-context"


def test_wrong_exporter_and_recipe_registrations_skip_the_plugin(caplog):
    from sslkit.reproduce.protocols import rotnet_protocol

    bad_exporter = types.SimpleNamespace(register_exporters=hookimpl(lambda register: register("x", object)))
    recipes = rotnet_protocol("mine", "rotation", {}, "nowhere", quick_width=0.5, quick_pretext={})
    bad_recipe = types.SimpleNamespace(
        __name__="bad_recipe", register_recipes=hookimpl(lambda register: register("other-name", recipes))
    )
    plugins = load_plugins(extra=[bad_exporter, bad_recipe], entry_points=False)
    failed = {r.name: r.error for r in plugins.records if r.status == "failed"}
    assert "not a subclass of sslkit.Exporter" in failed["SimpleNamespace"]
    assert "names another recipe or preset" in failed["bad_recipe"]
    assert not plugins.exporters.names() and not plugins.recipes.names()


def test_an_exception_that_cannot_print_itself_still_names_the_plugin(caplog):
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    def boom(register):
        raise Unprintable()

    plugin = types.SimpleNamespace(__name__="hostile", register_backbones=hookimpl(boom))
    plugins = load_plugins(extra=[plugin], entry_points=False)
    assert "Unprintable: (its message could not be printed)" in _record(plugins, "hostile").error


def test_a_plugin_that_prints_while_loading_writes_to_stderr(tmp_path):
    """Its output must not corrupt `sslkit plugins --json` on stdout."""
    (tmp_path / "chatty_plugin.py").write_text(
        "print('hello from the plugin')\n"
        "from sslkit import hookimpl\n\n"
        "@hookimpl\n"
        "def register_probes(register):\n"
        "    print('registering')\n"
    )
    code = (
        "import json, sys; from sslkit.plugins import load_plugins; "
        "p = load_plugins(extra=['chatty_plugin'], entry_points=False); print(json.dumps(p.probes.names()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": "."},
    )
    assert result.returncode == 0, result.stderr
    assert (
        json.loads(result.stdout) == [] and "hello from the plugin" in result.stderr and "registering" in result.stderr
    )
