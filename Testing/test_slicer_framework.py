"""The module on Slicer's real Python layer: the parameter node on the real @parameterNodeWrapper,
the widget on the real ScriptedLoadableModuleWidget, installing requirements through the real
slicer.packaging, the self-test's report.

Slicer's own ScriptedLoadableModule, parameterNodeWrapper, packaging and i18n (release v5.12.3,
../shared/slicer-python) run over slicer-core's MRML classes; only the compiled GUI is stood in
(Testing/slicer_stubs.py: qt, ctk, slicer.app, slicer.util's dialogs and UI loader), and pip itself
(nothing is ever installed into the test environment).  The widgets of the module's .ui record
what the module and the wrapper's GUI connectors set them to.  Skips, saying why, where Slicer's
Python layer is absent (a user's clone).
"""
import importlib
import logging
import os
import re
import sys
import time
import types

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slicer_scene as ss  # noqa: E402
import slicer_stubs  # noqa: E402

UI_FILE = os.path.join(ss.MODULE_DIR, "Resources", "UI", "CardiacQuan.ui")


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def module():
    return ss.load_module_or_skip()


@pytest.fixture
def scene(module, monkeypatch):
    import slicer

    s = ss.SlicerScene()
    monkeypatch.setattr(slicer, "mrmlScene", s.scene, raising=False)
    yield s
    s.close()


@pytest.fixture(scope="module")
def phantom_data(module):
    return ss.phantom(seed=3, n_frames=8, n_slices=3)


@pytest.fixture(scope="module")
def fake_engine_dir(tmp_path_factory):
    return ss.write_fake_engine(str(tmp_path_factory.mktemp("fake-engine")))


@pytest.fixture
def cine(scene, phantom_data):
    image, labels, ijk, times, _ = phantom_data
    proxy, seq, browser = ss.add_cine_sequence(scene.scene, image, ijk, times, "Cine")
    return types.SimpleNamespace(proxy=proxy, seq=seq, browser=browser, labels=labels, image=image, ijk=ijk)


def _fake_engine(logic, fake_dir):
    logic.engineModule = "cqfake"
    logic.enginePythonPaths = [fake_dir, ss.MODULE_DIR]
    return logic


@pytest.fixture
def app(module, scene, monkeypatch, tmp_path):
    """Play the Slicer application: slicer.app, slicer.modules, slicer.util's dialogs and UI loader."""
    import slicer

    application = slicer_stubs.Application(appLogic=scene.appLogic, temporaryPath=str(tmp_path))
    gui = slicer_stubs.GuiUtil(UI_FILE)
    shown = []
    monkeypatch.setattr(slicer, "app", application, raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
        cardiacquan=types.SimpleNamespace(path=ss.MODULE_FILE),
        sequences=types.SimpleNamespace(setToolBarActiveBrowserNode=shown.append)), raising=False)
    for name in slicer_stubs.GuiUtil.NAMES:
        monkeypatch.setattr(slicer.util, name, getattr(gui, name), raising=False)
    return types.SimpleNamespace(app=application, gui=gui, shown=shown)


@pytest.fixture
def widget(module, app, cine, fake_engine_dir, tmp_path):
    """The module's widget as Slicer makes it: metadata, then Widget(parent) and setup()."""
    parent = types.SimpleNamespace(path=ss.MODULE_FILE)
    module.CardiacQuan(parent)
    assert parent.title == "Cardiac LV Quantification" and parent.categories == ["Cardiac"]
    panel = types.SimpleNamespace(isEntered=True, layout=lambda: slicer_stubs.Anything())
    w = module.CardiacQuanWidget(panel)
    w.setup()
    w.logic.temporaryDirectory = str(tmp_path / "runs")
    _fake_engine(w.logic, fake_engine_dir)
    w.logic.missingRequirements = lambda network=True: []
    w.test = types.SimpleNamespace(ui=app.gui.ui, gui=app.gui, app=app.app, cine=cine, shown=app.shown)
    yield w
    w.cleanup()


def _tick(w, until, timeout=60):
    deadline = time.time() + timeout
    while not until() and time.time() < deadline:
        w.onTimer()
        time.sleep(0.05)
    assert until(), "timed out"


def _tick_until_done(w, timeout=120):
    _tick(w, lambda: w._job is None or w._job.done, timeout)
    w.onTimer()


# --------------------------------------------------------------------------------------
# the framework is Slicer's own
# --------------------------------------------------------------------------------------
def test_the_module_stands_on_slicers_own_python_layer(module):
    import slicer
    from slicer.parameterNodeWrapper import isParameterNodeWrapper
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget

    shared, _ = slicer_stubs.shared_slicer_python()
    for name in ("ScriptedLoadableModule", "parameterNodeWrapper", "packaging", "i18n"):
        assert os.path.abspath(sys.modules[f"slicer.{name}"].__file__).startswith(shared), name
    assert issubclass(module.CardiacQuanWidget, ScriptedLoadableModuleWidget)
    assert issubclass(module.CardiacQuanLogic, ScriptedLoadableModuleLogic)
    assert isParameterNodeWrapper(module.CardiacQuanParameterNode)
    assert set(module.CardiacQuanParameterNode.allParameters) == {"inputCine", "slices", "keepTemporaryFiles",
                                                                  "lastIndicesTable"}
    # slicer-core's MRML classes under the same `slicer` package
    assert slicer.vtkMRMLSequenceNode is not None and "qt" in sys.modules


def test_a_union_without_none_cannot_hold_the_default_on_the_real_wrapper(module, scene):
    """Why inputCine is `... | None`: Slicer's wrapper writes every default (None) when it wraps."""
    from typing import Union

    import slicer
    from slicer.parameterNodeWrapper import parameterNodeWrapper

    @parameterNodeWrapper
    class Old:
        inputCine: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSequenceNode]

    node = scene.scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    with pytest.raises(TypeError, match="Unable to write value 'None'"):
        Old(node)


# --------------------------------------------------------------------------------------
# the parameter node on the real wrapper
# --------------------------------------------------------------------------------------
def test_parameter_node_takes_every_value_the_gui_can_give(module, scene, cine, phantom_data):
    import slicer

    logic = module.CardiacQuanLogic()
    p = logic.getParameterNode()
    assert (p.inputCine, p.slices, p.keepTemporaryFiles, p.lastIndicesTable) == (None, "all slices", False, None)
    assert logic.getParameterNode().parameterNode is p.parameterNode            # one per scene (singleton)
    assert p.parameterNode.GetAttribute("ModuleName") == "CardiacQuan"
    image, _, ijk, times, _ = phantom_data
    fourD = ss.add_multiframe_volume(scene.scene, image, ijk, times, "Cine4D")
    table = scene.scene.AddNewNodeByClass("vtkMRMLTableNode", "indices")
    for value in (cine.seq, cine.proxy, fourD, None, cine.proxy):
        p.inputCine = value
        assert p.inputCine is value
        assert module.CardiacQuanParameterNode(p.parameterNode).inputCine is value   # stored, not cached only
    for choice in module.SLICE_CHOICES:
        p.slices = choice
        assert module.CardiacQuanParameterNode(p.parameterNode).slices == choice
    with pytest.raises(ValueError):
        p.slices = "every other slice"
    for flag in (True, False):
        p.keepTemporaryFiles = flag
        assert module.CardiacQuanParameterNode(p.parameterNode).keepTemporaryFiles is flag
    for value in (table, None):
        p.lastIndicesTable = value
        assert p.lastIndicesTable is value
    with pytest.raises(Exception):
        p.inputCine = table                                  # not a cine type
    assert p.inputCine is cine.proxy
    assert isinstance(p.inputCine, slicer.vtkMRMLScalarVolumeNode)


# --------------------------------------------------------------------------------------
# the widget against the recording ui
# --------------------------------------------------------------------------------------
def test_widget_binds_the_ui_through_the_wrappers_connectors(widget):
    ui, p = widget.test.ui, widget._parameterNode
    assert ui.inputSelector.nodeTypes == ("vtkMRMLScalarVolumeNode", "vtkMRMLSequenceNode") or \
        list(ui.inputSelector.nodeTypes) == ["vtkMRMLScalarVolumeNode", "vtkMRMLSequenceNode"]
    assert ui.slicesComboBox.items == list(widget.test.gui.ui.slicesComboBox.items) and \
        ui.slicesComboBox.items == ["all slices", "current slice", "mid-ventricular slice"]
    ui.slicesComboBox.currentIndex = 2
    assert p.slices == "mid-ventricular slice"
    p.slices = "all slices"
    assert ui.slicesComboBox.currentIndex == 0
    ui.keepTemporaryFilesCheckBox.checked = True
    assert p.keepTemporaryFiles is True
    assert widget.test.app.moduleManager().connections, "the framework watches for the module's unload"


def test_quantify_button_follows_the_chosen_cine(widget, scene, phantom_data):
    ui, cine, p = widget.test.ui, widget.test.cine, widget._parameterNode
    assert p.inputCine is cine.proxy and ui.inputSelector.currentNode() is cine.proxy   # the scene's cine
    assert ui.quantifyButton.enabled and ui.quantifyButton.text == "Quantify LV"
    ui.inputSelector.setCurrentNode(None)                                               # cleared
    assert p.inputCine is None
    assert not ui.quantifyButton.enabled and ui.quantifyButton.toolTip == "Select an input cine first"
    assert ui.summaryLabel.text == "No results yet."
    ui.inputSelector.setCurrentNode(cine.seq)                                            # a sequence
    assert p.inputCine is cine.seq and ui.quantifyButton.enabled
    image, _, ijk, times, _ = phantom_data
    fourD = ss.add_multiframe_volume(scene.scene, image, ijk, times, "Cine4D")
    ui.inputSelector.setCurrentNode(fourD)                                               # a 4-D volume
    assert p.inputCine is fourD and ui.quantifyButton.enabled
    assert ("enabled", False) in ui.quantifyButton.history and ("enabled", True) in ui.quantifyButton.history


def test_start_progress_results_summary(widget):
    ui, cine = widget.test.ui, widget.test.cine
    progress = []
    original = widget.onProgress
    widget.onProgress = lambda d, t, m: (progress.append((d, t, m)), original(d, t, m))
    ui.quantifyButton.click()
    job = widget._job
    job.progressCallback = widget.onProgress
    assert ui.quantifyButton.text == "Cancel" and ui.quantifyButton.enabled
    assert ui.progressBar.visible and widget._timer.active and not ui.inputSelector.enabled
    assert ui.statusLabel.text == "Quantifying..."
    _tick_until_done(widget)
    assert progress and ui.progressBar.format.startswith("frame"), ui.progressBar.format
    assert ("range", (0, progress[-1][1])) in ui.progressBar.history
    assert ui.statusLabel.text.startswith("Done in"), ui.statusLabel.text
    assert not ui.progressBar.visible and not widget._timer.active and ui.quantifyButton.text == "Quantify LV"
    assert ui.summaryLabel.text.startswith("Cine: ") and "ED frame" in ui.summaryLabel.text
    assert ui.requantifyButton.enabled and ui.showResultsButton.enabled
    assert widget._parameterNode.lastIndicesTable is widget.logic.findOutputs(cine.proxy).indicesTable
    assert widget.test.shown, "the results' browser goes to the Sequences toolbar"


def test_cancel_never_waits_in_the_gui_thread(widget, scene, monkeypatch, tmp_path):
    ui = widget.test.ui
    before = ss.snapshot(scene.scene)
    monkeypatch.setenv("CQFAKE_MODE", "hang")
    monkeypatch.setenv("CQFAKE_PIDDIR", str(tmp_path))
    # the engine ignores SIGTERM: a Cancel that waited for it would hang the GUI for seconds
    monkeypatch.setenv("CQFAKE_IGNORE_TERM", "1")
    ui.quantifyButton.click()
    _tick(widget, lambda: ui.progressBar.format.startswith("frame"))
    child = int((tmp_path / "child.pid").read_text())
    t0 = time.monotonic()
    ui.quantifyButton.click()                                  # Cancel
    assert time.monotonic() - t0 < 0.5, "Cancel waited in the GUI thread"
    assert ui.statusLabel.text == "Cancelling..." and not widget._job.done
    ticks = []
    while not widget._job.done:
        t0 = time.monotonic()
        widget.onTimer()
        ticks.append(time.monotonic() - t0)
        time.sleep(0.05)
        assert len(ticks) < 400
    widget.onTimer()
    assert max(ticks) < 0.5, f"a timer tick waited {max(ticks):.2f} s"
    assert ui.statusLabel.text == "Cancelled; the scene is unchanged."
    assert ui.quantifyButton.text == "Quantify LV" and not widget._timer.active
    assert not _alive(child), "the engine's child survived Cancel"
    assert ss.snapshot(scene.scene) == before


def test_an_engine_error_is_shown_once(widget, scene, monkeypatch, caplog):
    ui = widget.test.ui
    monkeypatch.setenv("CQFAKE_MODE", "error")
    ui.quantifyButton.click()
    _tick_until_done(widget)
    for _ in range(5):
        widget.onTimer()
    assert ui.statusLabel.text == "Failed: the network found no left ventricle in slice 2"
    assert [v for k, v in ui.statusLabel.history if k == "text"].count(ui.statusLabel.text) == 1
    assert not widget._timer.active


def test_an_error_while_polling_is_shown_once_and_ends_the_run(widget, monkeypatch, caplog, tmp_path):
    ui = widget.test.ui
    monkeypatch.setenv("CQFAKE_MODE", "hang")
    monkeypatch.setenv("CQFAKE_PIDDIR", str(tmp_path))
    ui.quantifyButton.click()
    job = widget._job

    def broken():
        raise RuntimeError("the progress pipe broke")

    monkeypatch.setattr(job.process, "events", broken)
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            widget.onTimer()
    assert job.done and job.state == "failed"
    assert ui.statusLabel.text == "Failed: the progress pipe broke"
    assert [v for k, v in ui.statusLabel.history if k == "text"].count(ui.statusLabel.text) == 1
    assert len([r for r in caplog.records if "unexpected error" in r.getMessage()]) == 1
    assert not widget._timer.active and ui.quantifyButton.text == "Quantify LV"
    for _ in range(100):
        if job.process.proc.poll() is not None:
            break
        time.sleep(0.05)
    assert job.process.proc.poll() is not None, "the engine was left running"


def test_scene_close_while_running_cancels_and_reopen_restores_the_gui(widget, scene, monkeypatch, tmp_path):
    import slicer

    ui, cine = widget.test.ui, widget.test.cine
    ui.slicesComboBox.currentIndex = 2                     # mid-ventricular slice
    ui.quantifyButton.click()
    _tick_until_done(widget)
    table = widget.logic.findOutputs(cine.proxy).indicesTable
    assert widget._parameterNode.lastIndicesTable is table
    path = scene.save_mrb(str(tmp_path / "study.mrb"))

    monkeypatch.setenv("CQFAKE_MODE", "hang")
    monkeypatch.setenv("CQFAKE_PIDDIR", str(tmp_path))
    ui.slicesComboBox.currentIndex = 0
    ui.quantifyButton.click()
    running = widget._job
    t0 = time.monotonic()
    slicer.mrmlScene.Clear(0)                              # File > Close Scene
    assert time.monotonic() - t0 < 1.0, "closing the scene waited for the engine"
    assert ui.inputSelector.currentNode() is None and ui.summaryLabel.text == "No results yet."
    _tick_until_done(widget)
    assert running.state == "cancelled" and ui.statusLabel.text == "Cancelled; the scene is unchanged."
    assert slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLTableNode") is None   # nothing imported after the close
    p = widget._parameterNode
    assert p is not None and p.inputCine is None and not ui.quantifyButton.enabled

    # File > Open the saved scene into the same application
    assert scene.appLogic.OpenSlicerDataBundle(path, scene.tempdir("reopen-"))
    p = widget._parameterNode
    proxy = slicer.mrmlScene.GetFirstNode("Cine", "vtkMRMLScalarVolumeNode")
    assert p.inputCine is proxy and ui.inputSelector.currentNode() is proxy
    assert p.slices == "mid-ventricular slice" and ui.slicesComboBox.currentText == "mid-ventricular slice"
    assert p.lastIndicesTable is not None and p.lastIndicesTable.GetName() == table.GetName()
    assert ui.quantifyButton.enabled and ui.requantifyButton.enabled
    assert ui.summaryLabel.text.startswith("Cine: ") and "ED frame" in ui.summaryLabel.text


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------------------
# installing requirements: the real slicer.packaging, pip stood in
# --------------------------------------------------------------------------------------
@pytest.fixture
def pip(monkeypatch):
    """pip itself, stood in: records each call and the constraints it was given; installs nothing."""
    import slicer

    calls = []

    def record(args):
        args = list(args)
        constraints = args[args.index("-c") + 1] if "-c" in args else None
        calls.append(dict(args=args, constraints=open(constraints).read() if constraints else None))

    def executePythonModule(module, args, blocking=True, logCallback=None, completedCallback=None):
        assert module == "pip"
        record(args)
        if logCallback:
            logCallback("Successfully installed (stand-in)")
        if completedCallback:
            completedCallback(0)

    def pip_install_5_10(requirements):   # Slicer 5.10's signature
        record(["install", *requirements] if isinstance(requirements, list) else ["install", *requirements.split()])

    monkeypatch.setattr(slicer.util, "executePythonModule", executePythonModule)
    monkeypatch.setattr(slicer.util, "pip_install", pip_install_5_10)
    return calls


@pytest.fixture
def missing_requirement(module, tmp_path, monkeypatch):
    """A requirements file whose one requirement is not installed (the module's own ones may all be)."""
    from CardiacQuanLib import requirements

    path = tmp_path / "requirements.txt"
    path.write_text("# test\nscipy>=1.0\ncardiacquan-absent-package>=1.2\n")
    monkeypatch.setattr(requirements, "REQUIREMENTS_FILE", str(path))
    return "cardiacquan-absent-package>=1.2"


def test_requirements_file_lists_runtime_packages_only_and_never_what_slicer_ships(module):
    from CardiacQuanLib import requirements

    names = [r.name for r in requirements.loadRequirements()]
    assert "onnxruntime" in names
    for shipped in ("numpy", "SimpleITK", "vtk", "tensorflow", "tensorflow-cpu", "keras", "h5py"):
        assert shipped.lower() not in [n.lower() for n in names], shipped
    assert {r.name for r in requirements.requirementsFor(network=False)} == set(names) - {"onnxruntime"}
    missing = requirements.missingRequirements(network=True)
    assert all({"name", "pipSpec", "text"} <= set(m) for m in missing)
    assert requirements.versionTuple("2.16.1rc0") == (2, 16, 1)


def test_slicer_5_12_installs_with_pip_ensure_under_constraints(module, app, pip, missing_requirement, monkeypatch):
    import numpy
    import slicer

    from CardiacQuanLib import requirements

    invalidated = []
    real = importlib.invalidate_caches
    monkeypatch.setattr(importlib, "invalidate_caches", lambda: (invalidated.append(1), real()))
    missing = requirements.missingRequirements()
    assert [m["pipSpec"] for m in missing] == [missing_requirement]
    assert requirements.installRequirements(missing) is True
    assert len(app.gui.asked) == 1 and app.gui.asked[0][0] == "confirm"   # pip_ensure's own question, once
    assert len(pip) == 1
    args = pip[0]["args"]
    assert args[:2] == ["install", missing_requirement] and "-c" in args
    assert f"numpy=={numpy.__version__}" in pip[0]["constraints"].splitlines()   # what Slicer ships stays
    assert "cardiacquan-absent-package" not in pip[0]["constraints"]
    assert not os.path.exists(args[args.index("-c") + 1])                       # the temporary file is gone
    assert invalidated, "import caches are invalidated after installing"
    assert not slicer.packaging.isPipInstallInProgress()


def test_slicer_5_12_declined_installs_nothing(module, app, pip, missing_requirement):
    from CardiacQuanLib import requirements

    app.gui.confirm = False
    assert requirements.installRequirements() is False
    assert pip == []


def test_slicer_5_10_falls_back_to_util_pip_install(module, app, pip, missing_requirement, monkeypatch):
    """Slicer 5.10 has no slicer.packaging: slicer.util.pip_install after our own question, with pip's
    line-per-step progress so Slicer's log reader keeps the GUI drawing."""
    from CardiacQuanLib import requirements

    monkeypatch.setitem(sys.modules, "slicer.packaging", None)     # `import slicer.packaging` fails
    assert requirements.installRequirements() is True
    assert [k for k, _ in app.gui.asked] == ["confirm"] and missing_requirement in app.gui.asked[0][1]
    assert len(pip) == 1
    args = pip[0]["args"]
    assert args[0] == "install" and args[-1] == missing_requirement
    assert args[args.index("--progress-bar") + 1] == "raw" and "-c" in args
    app.gui.confirm = False
    assert requirements.installRequirements() is False and len(pip) == 1


def test_outside_slicer_nothing_is_installed(module, scene, pip, missing_requirement):
    from CardiacQuanLib import requirements

    Err = module.CardiacQuanRunError
    with pytest.raises(Err, match="install the engine requirements with pip: cardiacquan-absent-package"):
        requirements.installRequirements()
    assert pip == []


def test_widget_installs_on_first_use_after_asking(widget, pip, missing_requirement, monkeypatch):
    from CardiacQuanLib import requirements

    ui, gui = widget.test.ui, widget.test.gui
    widget.logic.missingRequirements = requirements.missingRequirements
    gui.confirm = False
    ui.quantifyButton.click()
    assert pip == [] and widget._job is None
    assert ui.statusLabel.text == "Python packages missing: cardiacquan-absent-package"
    gui.confirm = True
    ui.quantifyButton.click()          # installs; pip is a stand-in, so the package is still missing
    assert len(pip) == 1 and widget._job is None
    assert ui.statusLabel.text == "Still missing: cardiacquan-absent-package"


def test_importing_the_module_installs_nothing(module, pip):
    importlib.reload(sys.modules["CardiacQuanLib.requirements"])
    assert pip == []


# --------------------------------------------------------------------------------------
# the self-test (Reload and Test) tells the truth
# --------------------------------------------------------------------------------------
def test_self_test_runs_the_geometry_path_and_says_why_the_network_did_not_run(module, app, monkeypatch):
    from CardiacQuanLib import requirements

    real = requirements.missingRequirements

    def noOnnxRuntime(network=True, path=None):
        out = real(network=False, path=path)
        if network:
            out.append(dict(name="onnxruntime", pipSpec="onnxruntime>=1.17", text="onnxruntime (not installed)"))
        return out

    monkeypatch.setattr(module.CardiacQuanLogic, "missingRequirements", staticmethod(noOnnxRuntime))
    test = module.CardiacQuanTest()
    test.runTest()
    assert test.report["geometry path (given masks)"] == "ran and passed"
    assert test.report["failure paths"] == "ran and passed"
    assert test.report["network path"].startswith("NOT RUN: missing onnxruntime (not installed)")
    last = app.gui.delayed[-1]
    assert last.startswith("CardiacQuan self-test: ") and "network path: NOT RUN: missing onnxruntime" in last


def test_self_test_fails_rather_than_skips_when_the_geometry_path_cannot_run(module, app, monkeypatch):
    missing = [dict(name="scipy", pipSpec="scipy>=1.11", text="scipy (not installed)")]
    monkeypatch.setattr(module.CardiacQuanLogic, "missingRequirements", staticmethod(lambda network=True: missing))
    test = module.CardiacQuanTest()
    with pytest.raises(AssertionError, match="scipy"):
        test.runTest()
    assert not re.search("skip", " ".join(app.gui.delayed), re.I)
