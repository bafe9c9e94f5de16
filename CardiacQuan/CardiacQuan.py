"""CardiacQuan: full left-ventricle quantification from short-axis cine MRI, as a 3D Slicer module.

Module layout (Slicer's scripted-module template):
- ``CardiacQuan``: module metadata (title, category, help, acknowledgement).
- ``CardiacQuanWidget``: the GUI only (thin); it calls the Logic.
- ``CardiacQuanLogic``: all the work, usable from Slicer's Python console for batch runs.
- ``CardiacQuanTest``: a self-test that runs inside Slicer on a generated phantom cine.

The engine (``CardiacQuanLib``, a plain Python package shipped in the module folder) runs in a
separate process -- Slicer's own Python (``PythonSlicer``) inside Slicer, ``sys.executable``
elsewhere -- and the two sides exchange files through a temporary folder.  This file imports
nothing from the engine but ``cardiacquan.contract`` (numpy only), so it loads even before the
engine's Python requirements are installed.

Outside the Slicer application (the ``slicer-core`` wheel used by the tests and batch scripts)
there is no Qt: the Logic still works; the Widget and the in-Slicer test are not defined.
"""
import csv
import json
import logging
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Annotated, Union

import numpy as np
import vtk
import vtk.util.numpy_support as vtk_np

import slicer
from slicer import (
    vtkMRMLScalarVolumeNode,
    vtkMRMLSequenceNode,
    vtkMRMLTableNode,
)

_MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if _MODULE_DIR not in sys.path:  # CardiacQuanLib lives next to this file (repo and Slicer install alike)
    sys.path.insert(0, _MODULE_DIR)

from cardiacquan import contract  # noqa: E402  (numpy only)

try:  # inside the Slicer application
    import qt
    import ctk  # noqa: F401  (used by the .ui widgets)
    from slicer.ScriptedLoadableModule import (
        ScriptedLoadableModule,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
        ScriptedLoadableModuleWidget,
    )
    from slicer.util import VTKObservationMixin
    from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper

    IN_SLICER_APP = True
except ImportError:  # slicer-core wheel: MRML and module logics, no Qt
    IN_SLICER_APP = False
    qt = None

    class ScriptedLoadableModuleLogic:
        """Stand-in for Slicer's base class outside the application (parameter node only)."""

        def __init__(self, parent=None):
            self.moduleName = type(self).__name__[: -len("Logic")] if type(self).__name__.endswith("Logic") else type(self).__name__

        def getParameterNode(self):
            scene = self.scene
            node = None
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
                n = scene.GetNthNodeByClass(i, "vtkMRMLScriptedModuleNode")
                if n.GetAttribute("ModuleName") == self.moduleName:
                    node = n
                    break
            if node is None:
                node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", self.moduleName)
                node.SetAttribute("ModuleName", self.moduleName)
                node.SetHideFromEditors(True)
            return node

    class Choice:  # noqa: D101  (same meaning as slicer.parameterNodeWrapper.Choice)
        def __init__(self, choices):
            self.choices = list(choices)

    def parameterNodeWrapper(cls):
        """Minimal typed wrapper over a vtkMRMLScriptedModuleNode (the real one needs Qt).

        Parameters are stored like Slicer's wrapper does: a node-typed field as a node reference with
        the field's name as role, other fields as string parameters named after the field.
        """
        fields = dict(getattr(cls, "__annotations__", {}))
        defaults = {k: getattr(cls, k) for k in fields if hasattr(cls, k)}

        def _isNodeType(annotation):
            if isinstance(annotation, str):
                return annotation.startswith("vtkMRML") or "vtkMRML" in annotation
            args = getattr(annotation, "__args__", None)
            if args:
                return any(isinstance(a, type) and issubclass(a, slicer.vtkMRMLNode) for a in args)
            return isinstance(annotation, type) and issubclass(annotation, slicer.vtkMRMLNode)

        def _baseType(annotation):
            origin = getattr(annotation, "__origin__", None)
            return _baseType(annotation.__origin__) if origin is not None and hasattr(annotation, "__metadata__") else annotation

        class Wrapper:
            def __init__(self, parameterNode):
                object.__setattr__(self, "parameterNode", parameterNode)
                for name, value in defaults.items():
                    if not _isNodeType(fields[name]) and not parameterNode.GetParameter(name):
                        parameterNode.SetParameter(name, str(value))

            def __getattr__(self, name):
                if name not in fields:
                    raise AttributeError(name)
                node = object.__getattribute__(self, "parameterNode")
                if _isNodeType(fields[name]):
                    return node.GetNodeReference(name)
                raw = node.GetParameter(name)
                base = _baseType(fields[name])
                if base is bool:
                    return raw == "True"
                if base in (int, float):
                    return base(raw) if raw else base(defaults.get(name, 0))
                return raw

            def __setattr__(self, name, value):
                if name not in fields:
                    raise AttributeError(name)
                node = object.__getattribute__(self, "parameterNode")
                if _isNodeType(fields[name]):
                    node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
                else:
                    node.SetParameter(name, str(value))

        # like Slicer's wrapper: observe / batch-modify through the wrapper
        for method in ("AddObserver", "RemoveObserver", "HasObserver", "StartModify", "EndModify", "GetID"):
            setattr(Wrapper, method, (lambda m: lambda self, *a: getattr(object.__getattribute__(self, "parameterNode"), m)(*a))(method))
        Wrapper.__name__ = cls.__name__
        Wrapper.__doc__ = cls.__doc__
        Wrapper.fieldNames = tuple(fields)
        return Wrapper


# ======================================================================================
# Output definitions (names, colours, standard terminology)
# ======================================================================================
LABEL_RV, LABEL_MYOCARDIUM, LABEL_LV_CAVITY = 1, 2, 3

_TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_ANATOMICAL_STRUCTURE = "SCT^123037004^Anatomical Structure"
_LEFT_VENTRICLE = "SCT^87878005^Left ventricle of heart"


def terminologyEntry(typeCode, anatomicRegion=""):
    """Slicer terminology entry string (context~category~type~modifier~anatomic context~region~modifier)."""
    return "~".join([_TERMINOLOGY_CONTEXT, _ANATOMICAL_STRUCTURE, typeCode, "^^", _ANATOMIC_CONTEXT,
                     anatomicRegion or "^^", "^^"])


# (label value in the engine's masks, segment ID, name, colour, terminology)
TISSUE_SEGMENTS = (
    (LABEL_MYOCARDIUM, "LV_myocardium", "LV myocardium", (0.30, 0.75, 0.35),
     terminologyEntry("SCT^74281007^Myocardium", _LEFT_VENTRICLE)),
    (LABEL_LV_CAVITY, "LV_cavity", "LV cavity", (0.90, 0.25, 0.25),
     terminologyEntry(_LEFT_VENTRICLE)),
    (LABEL_RV, "RV_cavity", "RV cavity", (0.25, 0.45, 0.90),
     terminologyEntry("SCT^53085002^Right ventricle of heart")),
)

# The six mid-cavity AHA segments over which the regional wall thickness RWT1..6 is measured.
# Sector k (1..6) of the engine's sector maps is RWTk.  (value, ID, name, colour)
SECTOR_SEGMENTS = (
    (1, "RWT1", "RWT1 inferoseptal (AHA 9)", (0.89, 0.10, 0.11)),
    (2, "RWT2", "RWT2 inferior (AHA 10)", (1.00, 0.50, 0.00)),
    (3, "RWT3", "RWT3 inferolateral (AHA 11)", (1.00, 0.85, 0.20)),
    (4, "RWT4", "RWT4 anterolateral (AHA 12)", (0.30, 0.69, 0.29)),
    (5, "RWT5", "RWT5 anterior (AHA 7)", (0.22, 0.49, 0.72)),
    (6, "RWT6", "RWT6 anteroseptal (AHA 8)", (0.60, 0.31, 0.64)),
)
# Every sector is LV myocardium (there is no DICOM master-list code per AHA segment that this
# module could rely on); the segment name says which sector it is.
SECTOR_TERMINOLOGY = TISSUE_SEGMENTS[0][4]

# Columns of the engine's indices.csv: (unit, description).  Unknown columns are kept as they come.
COLUMN_INFO = {
    "slice": ("", "Slice index (0-based, in the order of the input)"),
    "slice_position_mm": ("mm", "Slice position along the slice normal, in patient coordinates"),
    "frame": ("", "Frame index (0-based, in time order)"),
    "time_ms": ("ms", "Time of the frame in the cardiac cycle"),
    "cavity_area_mm2": ("mm\u00b2", "A1: LV cavity area (papillary muscles count as cavity)"),
    "myocardium_area_mm2": ("mm\u00b2", "A2: LV myocardium area"),
    "dim1_mm": ("mm", "D1: cavity diameter along the inferoseptal-anterolateral axis"),
    "dim2_mm": ("mm", "D2: cavity diameter along the inferior-anterior axis"),
    "dim3_mm": ("mm", "D3: cavity diameter along the inferolateral-anteroseptal axis"),
    "rwt1_mm": ("mm", "RWT1: wall thickness, inferoseptal sector (AHA 9)"),
    "rwt2_mm": ("mm", "RWT2: wall thickness, inferior sector (AHA 10)"),
    "rwt3_mm": ("mm", "RWT3: wall thickness, inferolateral sector (AHA 11)"),
    "rwt4_mm": ("mm", "RWT4: wall thickness, anterolateral sector (AHA 12)"),
    "rwt5_mm": ("mm", "RWT5: wall thickness, anterior sector (AHA 7)"),
    "rwt6_mm": ("mm", "RWT6: wall thickness, anteroseptal sector (AHA 8)"),
    "phase": ("", "Cardiac phase: 1 systole, 0 diastole"),
    "septum_angle_deg": ("\u00b0", "Direction of the septum (LV to RV centroid) in the image, counter-clockwise"),
    "orientation_source": ("", "How the sectors were oriented: rv = from the RV position, image-axes = RV assumed on the image's left (no RV found)"),
    "mirrored": ("", "1 when the image is a mirrored short-axis view (sectors then run clockwise)"),
    "source": ("", "What produced the final values (network, geometry of the masks, ...)"),
    "valid": ("", "0 when the frame has no LV cavity (its indices are empty); "
                  "myocardium and wall thickness are also empty where the frame has no myocardium"),
}
_INT_COLUMNS = {"slice", "frame", "phase", "valid", "mirrored"}
_STRING_COLUMNS = {"source", "orientation_source"}

SLICE_CHOICES = ("all slices", "current slice", "mid-ventricular slice")

# Engine requirements: import name -> (distribution, minimum version, pip spec).
# numpy comes with Slicer and is never reinstalled by this module.
ENGINE_REQUIREMENTS = {
    "numpy": ("numpy", "1.26", None),
    "scipy": ("scipy", "1.11", "scipy>=1.11"),
    "SimpleITK": ("SimpleITK", "2.3", "SimpleITK>=2.3"),
    "skimage": ("scikit-image", "0.22", "scikit-image>=0.22"),
    "pydicom": ("pydicom", "2.4", "pydicom>=2.4"),
    "nrrd": ("pynrrd", "1.0", "pynrrd>=1.0"),
    "h5py": ("h5py", "3.9", "h5py>=3.9"),
    "matplotlib": ("matplotlib", "3.7", "matplotlib>=3.7"),
}
NETWORK_REQUIREMENTS = {
    "keras": ("keras", "3.3", "keras>=3.3"),
    "tensorflow": ("tensorflow-cpu" if sys.platform != "darwin" else "tensorflow", "2.16",
                   "tensorflow-cpu>=2.16" if sys.platform != "darwin" else "tensorflow>=2.16"),
}

# Attributes / reference roles that mark the nodes this module made.
ROLE_ATTRIBUTE = "CardiacQuan.Role"
INPUT_REFERENCE_ROLE = "CardiacQuanInput"
FOLDER_ATTRIBUTE = "CardiacQuan.InputID"


class CardiacQuanRunError(RuntimeError):
    """A run that could not start or did not finish; the message is one line for the user."""


def _oneLine(message) -> str:
    text = " ".join(str(message).split())
    return text if text else "unknown error"


# ======================================================================================
# Module
# ======================================================================================
if IN_SLICER_APP:

    class CardiacQuan(ScriptedLoadableModule):
        """Module metadata."""

        def __init__(self, parent):
            ScriptedLoadableModule.__init__(self, parent)
            self.parent.title = "Cardiac LV Quantification"
            self.parent.categories = ["Cardiac"]
            self.parent.dependencies = ["Sequences", "Segmentations", "Plots", "Tables"]
            self.parent.contributors = ["CardiacQuan developers"]
            self.parent.helpText = HELP_TEXT
            self.parent.acknowledgementText = ACKNOWLEDGEMENT_TEXT


HELP_TEXT = """
Full quantification of the left ventricle (LV) from a short-axis cine MRI: for every frame of the
cardiac cycle, the LV is segmented and 11 indices plus the cardiac phase are measured.
<p><b>Input</b>: a cine loaded as a volume sequence (select the sequence or its proxy volume,
e.g. from DICOM with trigger times) or a 4-D (multi-frame) volume. <b>Slices</b>: all slices, the
slice shown in the Red view (current), or the mid-ventricular slice chosen automatically.
<b>Quantify LV</b> runs the network in a separate process (Cancel stops it);
<b>Re-quantify from edited masks</b> recomputes every index from the segmentation after you
corrected it in Segment Editor, without running the network.</p>
<p><b>Outputs</b> (in a folder next to the input; a re-run replaces them):</p>
<ul>
<li><b>LV segmentation</b>: segments LV myocardium, LV cavity, RV cavity (standard SNOMED CT
terminology, kept by DICOM SEG export), one per frame, recorded on the cine's sequence browser:
every frame shows its own masks while you scrub.</li>
<li><b>RWT sectors</b>: the myocardium split into the six mid-cavity AHA segments over which wall
thickness is measured: RWT1 inferoseptal (AHA 9), RWT2 inferior (10), RWT3 inferolateral (11),
RWT4 anterolateral (12), RWT5 anterior (7), RWT6 anteroseptal (8); one per frame.</li>
<li><b>Indices table</b>, one row per slice and frame: A1 cavity area and A2 myocardium area (mm&sup2;);
D1, D2, D3 cavity diameters (mm) along the inferoseptal-anterolateral, inferior-anterior and
inferolateral-anteroseptal axes; RWT1-RWT6 regional wall thickness (mm) in the six sectors;
phase (1 systole, 0 diastole); septum direction; time (ms); slice position (mm). End-diastole (ED,
largest cavity) and end-systole (ES, smallest cavity) frames are stored as table attributes
(CardiacQuan.EDFrame, CardiacQuan.ESFrame, CardiacQuan.MidSlice).</li>
<li><b>Area curves</b> plot: cavity and myocardium area over time for the plotted slice, systole
(ED to ES) highlighted, ED and ES marked.</li>
</ul>
<p>From the Python console: <code>logic = slicer.util.getModuleLogic("CardiacQuan")</code>, then
<code>logic.quantify(cineNode)</code> or <code>logic.requantify(cineNode)</code>.</p>
"""

ACKNOWLEDGEMENT_TEXT = """
The method follows Vesal S., Gu M., Maier A., Ravikumar N., "Spatio-temporal Multi-task Learning for
Cardiac MRI Left Ventricle Quantification", IEEE Journal of Biomedical and Health Informatics
25(7):2698-2709, 2021. The segmentation network was trained on the ACDC data set: Bernard O. et al.,
"Deep Learning Techniques for Automatic MRI Cardiac Multi-Structures Segmentation and Diagnosis:
Is the Problem Solved?", IEEE Transactions on Medical Imaging 37(11):2514-2525, 2018.
Please cite both when you publish results obtained with this module.
"""


# ======================================================================================
# Parameter node
# ======================================================================================
@parameterNodeWrapper
class CardiacQuanParameterNode:
    """GUI state, saved with the scene.

    inputCine - the cine: a volume sequence, its proxy volume, or a 4-D volume.
    slices - which slices to quantify.
    keepTemporaryFiles - keep the engine's exchange folder (for debugging).
    lastIndicesTable - indices table of the last run (restores the results summary).
    """

    inputCine: Union[vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode]
    slices: Annotated[str, Choice(list(SLICE_CHOICES))] = SLICE_CHOICES[0]
    keepTemporaryFiles: bool = False
    lastIndicesTable: vtkMRMLTableNode


# ======================================================================================
# Widget (GUI only)
# ======================================================================================
if IN_SLICER_APP:

    class CardiacQuanWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
        """GUI: select input, start/cancel, show progress and a summary. The Logic does the work."""

        def __init__(self, parent=None):
            ScriptedLoadableModuleWidget.__init__(self, parent)
            VTKObservationMixin.__init__(self)
            self.logic = None
            self._parameterNode = None
            self._parameterNodeGuiTag = None
            self._job = None
            self._timer = None

        def setup(self):
            ScriptedLoadableModuleWidget.setup(self)
            uiWidget = slicer.util.loadUI(self.resourcePath("UI/CardiacQuan.ui"))
            self.layout.addWidget(uiWidget)
            self.ui = slicer.util.childWidgetVariables(uiWidget)
            uiWidget.setMRMLScene(slicer.mrmlScene)

            self.logic = CardiacQuanLogic()

            self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
            self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

            self.ui.quantifyButton.connect("clicked(bool)", self.onQuantifyButton)
            self.ui.requantifyButton.connect("clicked(bool)", self.onRequantifyButton)
            self.ui.showResultsButton.connect("clicked(bool)", self.onShowResultsButton)
            self.ui.installRequirementsButton.connect("clicked(bool)", self.onInstallRequirementsButton)
            self.ui.progressBar.hide()

            self._timer = qt.QTimer()
            self._timer.setInterval(100)
            self._timer.timeout.connect(self.onTimer)

            self.initializeParameterNode()

        def cleanup(self):
            if self._job is not None and not self._job.done:
                self._job.cancel()
            self.removeObservers()

        def enter(self):
            self.initializeParameterNode()

        def exit(self):
            if self._parameterNode:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
                self._parameterNodeGuiTag = None
                self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

        def onSceneStartClose(self, caller, event):
            if self._job is not None and not self._job.done:
                self._job.cancel()
            self.setParameterNode(None)

        def onSceneEndClose(self, caller, event):
            if self.parent.isEntered:
                self.initializeParameterNode()

        def initializeParameterNode(self):
            self.setParameterNode(self.logic.getParameterNode())
            if not self._parameterNode.inputCine:
                candidate = self.logic.firstCineInScene()
                if candidate:
                    self._parameterNode.inputCine = candidate

        def setParameterNode(self, inputParameterNode):
            if self._parameterNode:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
                self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._parameterNode = inputParameterNode
            if self._parameterNode:
                self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
                self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

        # -- GUI state ---------------------------------------------------------------
        def _running(self):
            return self._job is not None and not self._job.done

        def _updateButtons(self, caller=None, event=None):
            p = self._parameterNode
            running = self._running()
            inputNode = p.inputCine if p else None
            self.ui.quantifyButton.text = "Cancel" if running else "Quantify LV"
            self.ui.quantifyButton.enabled = running or inputNode is not None
            self.ui.quantifyButton.toolTip = ("Stop the running quantification" if running else
                                              "Segment every frame and measure the LV indices" if inputNode else
                                              "Select an input cine first")
            outputs = self.logic.findOutputs(inputNode) if inputNode else None
            hasOutputs = outputs is not None and outputs.get("segmentationSequence") is not None
            self.ui.requantifyButton.enabled = (not running) and hasOutputs
            self.ui.inputSelector.enabled = not running
            self.ui.slicesComboBox.enabled = not running
            # the results of the selected cine, not of whichever cine ran last
            table = outputs.get("indicesTable") if outputs is not None else None
            self.ui.summaryLabel.text = (f"{inputNode.GetName()}: " + self.logic.resultsSummary(table) if table else
                                         "No results yet for this cine." if inputNode else "No results yet.")
            self.ui.showResultsButton.enabled = table is not None

        # -- actions -----------------------------------------------------------------
        def onQuantifyButton(self):
            if self._running():
                self._job.cancel()
                self.ui.statusLabel.text = "Cancelling..."
                return
            self._start(requantify=False)

        def onRequantifyButton(self):
            self._start(requantify=True)

        def _slicesOption(self):
            choice = self._parameterNode.slices
            if choice == "current slice":
                return self.logic.currentSliceIndex(self._parameterNode.inputCine)
            if choice == "mid-ventricular slice":
                return "mid"
            return "all"

        def _start(self, requantify):
            p = self._parameterNode
            try:
                if not self._ensureRequirements(network=not requantify):
                    return
                slices = self._slicesOption()
                common = dict(slices=slices, keepTemporaryFiles=p.keepTemporaryFiles,
                              progressCallback=self.onProgress, logCallback=self.onLog)
                if requantify:
                    self._job = self.logic.startRequantify(p.inputCine, **common)
                else:
                    self._job = self.logic.startQuantify(p.inputCine, **common)
            except Exception as e:  # a failed start leaves the scene as it was
                logging.exception("CardiacQuan could not start")
                self.ui.statusLabel.text = "Failed: " + _oneLine(e)
                return
            self.ui.progressBar.setRange(0, 0)
            self.ui.progressBar.format = "starting..."
            self.ui.progressBar.show()
            self.ui.statusLabel.text = "Re-quantifying from the edited masks..." if requantify else "Quantifying..."
            self._timer.start()
            self._updateButtons()

        def onProgress(self, done, total, message):
            if total > 0:
                self.ui.progressBar.setRange(0, total)
                self.ui.progressBar.value = min(done, total)
            self.ui.progressBar.format = message or f"{done} of {total}"

        def onLog(self, line):
            logging.info("CardiacQuan engine: " + line)

        def onTimer(self):
            job = self._job
            if job is None:
                self._timer.stop()
                return
            try:
                job.poll()
            except Exception as e:  # never leave the GUI in the running state
                logging.exception("CardiacQuan: unexpected error")
                self.ui.statusLabel.text = "Failed: " + _oneLine(e)
            if not job.done:
                return
            self._timer.stop()
            self.ui.progressBar.hide()
            if job.state == "succeeded":
                out = job.outputs
                self._parameterNode.lastIndicesTable = out.indicesTable
                self.ui.statusLabel.text = f"Done in {job.elapsedSeconds:.0f} s." + (
                    "  " + "; ".join(out.warnings) if out.warnings else "")
            elif job.state == "cancelled":
                self.ui.statusLabel.text = "Cancelled; the scene is unchanged."
            else:
                self.ui.statusLabel.text = "Failed: " + job.errorMessage
            self._updateButtons()

        def onShowResultsButton(self):
            inputNode = self._parameterNode.inputCine
            if inputNode:
                self.logic.showResults(self.logic.findOutputs(inputNode))

        def onInstallRequirementsButton(self):
            self._ensureRequirements(network=True, askFirst=False, reportSatisfied=True)

        def _ensureRequirements(self, network, askFirst=True, reportSatisfied=False):
            missing = self.logic.missingRequirements(network=network)
            if not missing:
                if reportSatisfied:
                    slicer.util.infoDisplay("All Python packages that CardiacQuan needs are installed.")
                return True
            blocking = [m for m in missing if m["pipSpec"] is None]
            if blocking:
                slicer.util.errorDisplay("CardiacQuan needs a newer Slicer: " +
                                         ", ".join(m["text"] for m in blocking))
                return False
            text = ("CardiacQuan needs these Python packages in Slicer's Python:\n  " +
                    "\n  ".join(m["text"] for m in missing) +
                    "\n\nInstall them now? (A few minutes and about 1 GB for TensorFlow. "
                    "Offline sites: see docs/slicer-module.md in the extension's repository.)")
            if askFirst and not slicer.util.confirmOkCancelDisplay(text, "CardiacQuan: install Python packages"):
                self.ui.statusLabel.text = "Python packages missing: " + ", ".join(m["name"] for m in missing)
                return False
            with slicer.util.tryWithErrorDisplay("Installing Python packages failed.", waitCursor=True):
                self.ui.statusLabel.text = "Installing Python packages..."
                slicer.app.processEvents()
                self.logic.installRequirements(missing)
            still = self.logic.missingRequirements(network=network)
            if still:
                self.ui.statusLabel.text = "Still missing: " + ", ".join(m["name"] for m in still)
                return False
            self.ui.statusLabel.text = "Python packages installed."
            return True


# ======================================================================================
# Engine process
# ======================================================================================
class EngineProcess:
    """One engine run in a child process: streams stderr progress lines, can kill its process tree."""

    def __init__(self, command, env=None, cwd=None):
        self.command = list(command)
        self.env = env
        self.cwd = cwd
        self.proc = None
        self.returncode = None
        self.cancelled = False
        self.lastErrorLine = None
        self.stderrTail = []
        self._queue = queue.Queue()
        self._threads = []

    def start(self):
        kwargs = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      env=self.env, cwd=self.cwd, bufsize=1, text=True, encoding="utf-8", errors="replace")
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True  # own process group: cancel ends the whole tree
        try:
            self.proc = subprocess.Popen(self.command, **kwargs)
        except OSError as e:
            raise CardiacQuanRunError(f"could not start the engine ({self.command[0]}): {e}") from None
        for stream, name in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            t = threading.Thread(target=self._reader, args=(stream, name), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _reader(self, stream, name):
        try:
            for line in iter(stream.readline, ""):
                self._queue.put((name, line.rstrip("\r\n")))
        except (OSError, ValueError):
            pass
        finally:
            self._queue.put((name, None))

    def events(self):
        """Drain the lines read so far: list of (stream, line)."""
        out = []
        while True:
            try:
                name, line = self._queue.get_nowait()
            except queue.Empty:
                return out
            if line is None:
                continue
            if name == "stderr":
                err = exchange.parse_error(line)
                if err is not None:
                    self.lastErrorLine = err
                if line.strip() and not line.startswith(exchange.PROGRESS_PREFIX):
                    self.stderrTail = (self.stderrTail + [line])[-20:]
            out.append((name, line))

    def finished(self):
        if self.proc is None:
            return False
        if self.returncode is None:
            rc = self.proc.poll()
            if rc is None:
                return False
            for t in self._threads:  # let the readers empty the pipes
                t.join(timeout=5)
            self.returncode = rc
        return True

    def cancel(self):
        """End the engine and every process it started."""
        self.cancelled = True
        if self.proc is None or self.proc.poll() is not None:
            self._killGroup(signal.SIGKILL if os.name != "nt" else None)  # stragglers of a finished leader
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.proc.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            self._killGroup(signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
            self._killGroup(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def _killGroup(self, sig):
        if os.name == "nt" or self.proc is None or sig is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def errorMessage(self):
        if self.lastErrorLine:
            return _oneLine(self.lastErrorLine)
        tail = [l for l in self.stderrTail if l.strip()]
        if tail:
            return _oneLine(f"the engine stopped (exit code {self.returncode}): {tail[-1]}")
        return f"the engine stopped with exit code {self.returncode}"


# ======================================================================================
# Input description
# ======================================================================================
class CineInput:
    """What the Logic reads from an input node: pixels, geometry, frame index values, browser."""

    def __init__(self):
        self.inputNode = None          # node the user selected
        self.ownerNode = None          # node the outputs are attached to (cine sequence, or the 4-D volume)
        self.sequenceNode = None       # volume sequence (None for a 4-D volume)
        self.browserNode = None        # sequence browser showing the cine (may be None before outputs exist)
        self.referenceVolume = None    # a volume node with the frame geometry (proxy or 4-D volume)
        self.image = None              # (T, Z, R, C) float32
        self.ijkToRas = None           # 4x4 numpy
        self.indexValues = []          # one string per frame
        self.indexName = "time"
        self.indexUnit = "ms"
        self.indexType = None
        self.timesMs = None
        self.timesKnown = False
        self.name = ""

    @property
    def shape(self):
        return self.image.shape

    def frameGeometryImage(self):
        """An empty vtkOrientedImageData with the full frame geometry."""
        T, Z, R, C = self.image.shape
        oi = slicer.vtkOrientedImageData()
        oi.SetExtent(0, C - 1, 0, R - 1, 0, Z - 1)
        oi.SetImageToWorldMatrix(_vtkMatrix(self.ijkToRas))
        return oi

    def engineGeometry(self):
        """(spacing (row, col), origins (Z,3) LPS, direction 3x3 LPS, slice thickness) for the engine."""
        M = self.ijkToRas
        colVec, rowVec, sliceVec = M[:3, 0], M[:3, 1], M[:3, 2]
        colSp, rowSp = float(np.linalg.norm(colVec)), float(np.linalg.norm(rowVec))
        rasToLps = np.diag([-1.0, -1.0, 1.0])
        colDir = rasToLps @ (colVec / colSp)
        rowDir = rasToLps @ (rowVec / rowSp)
        normal = np.cross(colDir, rowDir)
        Z = self.image.shape[1]
        origins = np.array([rasToLps @ (M @ np.array([0.0, 0.0, z, 1.0]))[:3] for z in range(Z)])
        direction = np.column_stack([colDir, rowDir, normal])
        return (rowSp, colSp), origins, direction, float(np.linalg.norm(sliceVec))


def _vtkMatrix(a):
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def _numpyMatrix(m):
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def _imageArray(imageData):
    """(K, J, I[, components]) copy of a vtkImageData's scalars."""
    dims = imageData.GetDimensions()
    scalars = imageData.GetPointData().GetScalars()
    if scalars is None:
        raise CardiacQuanRunError("a frame of the cine holds no image data")
    a = vtk_np.vtk_to_numpy(scalars)
    nc = imageData.GetNumberOfScalarComponents()
    shape = (dims[2], dims[1], dims[0]) + ((nc,) if nc > 1 else ())
    return np.array(a.reshape(shape))


def _volumeIjkToRas(volumeNode):
    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(m)
    return _numpyMatrix(m)


# ======================================================================================
# Outputs
# ======================================================================================
class CardiacQuanOutputs:
    """The nodes of one run (any may be None)."""

    def __init__(self):
        self.segmentationSequence = None
        self.segmentation = None          # proxy segmentation node (what the views show)
        self.sectorsSequence = None
        self.sectors = None               # proxy sectors segmentation node
        self.indicesTable = None
        self.curvesTable = None
        self.chart = None
        self.series = []
        self.browser = None
        self.folderItemID = 0
        self.summary = {}
        self.warnings = []
        self.outputDirectory = None       # kept only with keepTemporaryFiles
        self.leftovers = []               # segmentations of an earlier run whose sequence was deleted

    def nodes(self):
        return [n for n in (self.segmentationSequence, self.segmentation, self.sectorsSequence, self.sectors,
                            self.indicesTable, self.curvesTable, self.chart, *self.series) if n is not None]

    def get(self, key, default=None):
        return getattr(self, key, default)


class QuantifyJob:
    """An engine run and the import of its results; poll() from the GUI timer, wait() from scripts."""

    def __init__(self, logic, cine, slices, workDir, process, labelsGiven, keepTemporaryFiles,
                 progressCallback=None, logCallback=None, finishedCallback=None, showResults=True):
        self.logic = logic
        self.showResults = showResults
        self.cine = cine
        self.slices = slices
        self.workDir = workDir
        self.outputDirectory = os.path.join(workDir, "out")
        self.process = process
        self.labelsGiven = labelsGiven
        self.keepTemporaryFiles = keepTemporaryFiles
        self.progressCallback = progressCallback
        self.logCallback = logCallback
        self.finishedCallback = finishedCallback
        self.state = "running"
        self.errorMessage = ""
        self.outputs = None
        self.progress = (0, 0, "")
        self.startTime = time.time()
        self.elapsedSeconds = 0.0

    @property
    def done(self):
        return self.state in ("succeeded", "failed", "cancelled")

    def cancel(self):
        if self.done:
            return
        self.process.cancel()
        self.poll()

    def poll(self):
        """Handle what the engine said since the last call; import the results when it ends.

        Returns True while the job is running.
        """
        if self.done:
            return False
        for stream, line in self.process.events():
            p = exchange.parse_progress(line) if stream == "stderr" else None
            if p is not None:
                self.progress = p
                if self.progressCallback:
                    self.progressCallback(*p)
            elif self.logCallback:
                self.logCallback(line)
        if not self.process.finished():
            return True
        try:
            if self.process.cancelled:
                self.state, self.errorMessage = "cancelled", "cancelled by the user"
            elif self.process.returncode != 0:
                self.state, self.errorMessage = "failed", self.process.errorMessage()
            else:
                try:
                    self.outputs = self.logic._importResults(self)
                    self.state = "succeeded"
                except Exception as e:  # import failed: the scene was rolled back
                    logging.debug("CardiacQuan import failed", exc_info=True)
                    self.state, self.errorMessage = "failed", _oneLine(e)
        finally:
            self.elapsedSeconds = time.time() - self.startTime
            if self.keepTemporaryFiles:
                if self.outputs is not None:
                    self.outputs.outputDirectory = self.outputDirectory
            else:
                shutil.rmtree(self.workDir, ignore_errors=True)
        if self.state != "succeeded":
            logging.warning("CardiacQuan: %s", self.errorMessage)
        if self.finishedCallback:
            self.finishedCallback(self)
        return False

    def wait(self, timeout=None):
        """Block until the job ends (keeps Slicer's GUI responsive). Returns self."""
        deadline = None if timeout is None else time.time() + timeout
        while self.poll():
            if deadline is not None and time.time() > deadline:
                self.cancel()
                break
            _processEvents()
            time.sleep(0.05)
        return self


def _processEvents():
    app = getattr(slicer, "app", None)
    if app is not None and hasattr(app, "processEvents"):
        app.processEvents()


# ======================================================================================
# Logic
# ======================================================================================
class CardiacQuanLogic(ScriptedLoadableModuleLogic):
    """All the work of the module; no GUI.

    Console use (inside Slicer)::

        logic = slicer.util.getModuleLogic("CardiacQuan")   # or CardiacQuan.CardiacQuanLogic()
        out = logic.quantify(slicer.util.getNode("cine"), slices="all")
        out.indicesTable, out.segmentation, out.chart
        out = logic.requantify(slicer.util.getNode("cine"))  # after editing the masks

    Outside the application (slicer-core), pass the scene and application logic:
    ``CardiacQuanLogic(scene=scene, appLogic=appLogic)``.
    """

    def __init__(self, scene=None, appLogic=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self._scene = scene
        self._appLogic = appLogic
        # How the engine is started (tests may point these at another engine).
        self.pythonExecutable = None           # None: PythonSlicer in Slicer, sys.executable elsewhere
        self.engineModule = "CardiacQuanLib"
        self.enginePythonPaths = [_MODULE_DIR]
        self.engineExtraArguments = []
        self.temporaryDirectory = None         # None: Slicer's temporary folder, or the system one

    # -- scene access ------------------------------------------------------------------
    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    @property
    def appLogic(self):
        if self._appLogic is not None:
            return self._appLogic
        app = getattr(slicer, "app", None)
        return app.applicationLogic() if app is not None else None

    def moduleLogic(self, name):
        """A module's logic by its Slicer module name ("Sequences", "Plots", ...)."""
        logic = None
        if self.appLogic is not None:
            logic = self.appLogic.GetModuleLogic(name)
        if logic is None and IN_SLICER_APP:
            module = getattr(slicer.modules, name.lower(), None)
            logic = module.logic() if module is not None else None
        return logic

    def getParameterNode(self):
        return CardiacQuanParameterNode(super().getParameterNode())

    # -- requirements ------------------------------------------------------------------
    @staticmethod
    def missingRequirements(network=True):
        """Engine packages absent or too old in this Python: list of dicts (name, pipSpec, text)."""
        import importlib.metadata
        import importlib.util

        reqs = dict(ENGINE_REQUIREMENTS)
        if network:
            reqs.update(NETWORK_REQUIREMENTS)
        missing = []
        for importName, (dist, minimum, pipSpec) in reqs.items():
            if importlib.util.find_spec(importName) is None:
                missing.append(dict(name=dist, pipSpec=pipSpec, text=f"{dist} (not installed)"))
                continue
            version = None
            for candidate in (dist, importName, "tensorflow" if importName == "tensorflow" else dist):
                try:
                    version = importlib.metadata.version(candidate)
                    break
                except importlib.metadata.PackageNotFoundError:
                    continue
            if version is not None and _versionTuple(version) < _versionTuple(minimum):
                missing.append(dict(name=dist, pipSpec=pipSpec, text=f"{dist} {version} (needs >= {minimum})"))
        return missing

    @staticmethod
    def installRequirements(missing=None, network=True):
        """Install the missing engine packages with Slicer's pip helper (inside Slicer only)."""
        if missing is None:
            missing = CardiacQuanLogic.missingRequirements(network=network)
        specs = [m["pipSpec"] for m in missing if m["pipSpec"]]
        if not specs:
            return
        if not IN_SLICER_APP:
            raise CardiacQuanRunError("install the engine requirements with pip: " + " ".join(specs))
        slicer.util.pip_install(" ".join(specs))

    # -- inputs ------------------------------------------------------------------------
    def firstCineInScene(self):
        """A likely input: the proxy volume of the first browser that plays a volume sequence."""
        scene = self.scene
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
            browser = scene.GetNthNodeByClass(i, "vtkMRMLSequenceBrowserNode")
            master = browser.GetMasterSequenceNode()
            if master and "VolumeNode" in (master.GetDataNodeClassName() or "") and master.GetAttribute(ROLE_ATTRIBUTE) is None:
                proxy = browser.GetProxyNode(master)
                return proxy or master
        return None

    def readCine(self, inputNode) -> CineInput:
        """Pixels, geometry and frame index values of a cine node (the node itself is not modified)."""
        if inputNode is None:
            raise CardiacQuanRunError("no input cine selected")
        seqLogic = self.moduleLogic("Sequences")
        cine = CineInput()
        cine.inputNode = inputNode
        sequence = None
        browser = None
        if inputNode.IsA("vtkMRMLSequenceNode"):
            sequence = inputNode
            if seqLogic is not None:
                browser = seqLogic.GetFirstBrowserNodeForSequenceNode(sequence)
        elif inputNode.IsA("vtkMRMLVolumeNode"):
            if seqLogic is not None:
                browser = seqLogic.GetFirstBrowserNodeForProxyNode(inputNode)
            if browser is not None:
                sequence = browser.GetSequenceNode(inputNode)
        else:
            raise CardiacQuanRunError(f"'{inputNode.GetName()}' is not a volume sequence or a volume")

        if sequence is not None:
            self._readSequence(cine, sequence, browser)
        else:
            self._readMultiFrameVolume(cine, inputNode)
        cine.name = (cine.ownerNode.GetName() or "cine")
        T = cine.image.shape[0]
        if T < 2:
            raise CardiacQuanRunError(f"'{cine.name}' has a single frame: a cine over the cardiac cycle is needed")
        if min(cine.image.shape[2:]) < 8:
            raise CardiacQuanRunError(f"the frames of '{cine.name}' are too small ({cine.image.shape[2]}x{cine.image.shape[3]})")
        return cine

    def _readSequence(self, cine, sequence, browser):
        n = sequence.GetNumberOfDataNodes()
        if n == 0:
            raise CardiacQuanRunError(f"the sequence '{sequence.GetName()}' is empty")
        className = sequence.GetDataNodeClassName() or ""
        if "VolumeNode" not in className or "LabelMap" in className:
            raise CardiacQuanRunError(f"the sequence '{sequence.GetName()}' holds {className or 'no'} items, not image volumes")
        frames, ijk = [], None
        for i in range(n):
            node = sequence.GetNthDataNode(i)
            if node is None or node.GetImageData() is None:
                raise CardiacQuanRunError(f"frame {i} of '{sequence.GetName()}' holds no image")
            a = _imageArray(node.GetImageData())
            if a.ndim != 3:
                raise CardiacQuanRunError(f"frame {i} of '{sequence.GetName()}' is not a scalar volume")
            m = _volumeIjkToRas(node)
            if ijk is None:
                ijk = m
            elif frames and (a.shape != frames[0].shape or not np.allclose(m, ijk, atol=1e-3)):
                raise CardiacQuanRunError(f"frame {i} of '{sequence.GetName()}' differs in size or position from frame 0")
            frames.append(a)
        cine.image = np.stack(frames).astype(np.float32, copy=False)
        cine.ijkToRas = ijk
        cine.sequenceNode = sequence
        cine.ownerNode = sequence
        cine.browserNode = browser
        cine.referenceVolume = browser.GetProxyNode(sequence) if browser is not None else None
        cine.indexValues = [sequence.GetNthIndexValue(i) for i in range(n)]
        cine.indexName = sequence.GetIndexName() or "time"
        cine.indexUnit = sequence.GetIndexUnit() or ""
        cine.indexType = sequence.GetIndexType()
        cine.timesMs, cine.timesKnown = _timesFromIndex(cine.indexValues, cine.indexName, cine.indexUnit)

    def _readMultiFrameVolume(self, cine, volume):
        image = volume.GetImageData()
        nc = image.GetNumberOfScalarComponents() if image is not None else 0
        isMulti = volume.IsA("vtkMRMLMultiVolumeNode") or volume.GetAttribute("MultiVolume.NumberOfFrames") is not None
        if image is None or nc < 2 or not (isMulti or (volume.IsA("vtkMRMLVectorVolumeNode") and nc >= 5)):
            raise CardiacQuanRunError(
                f"'{volume.GetName()}' is a single 3-D volume; select a cine: a volume sequence (or its proxy volume) "
                "or a 4-D multi-frame volume")
        a = _imageArray(image)                      # (Z, R, C, T)
        cine.image = np.ascontiguousarray(np.moveaxis(a, -1, 0)).astype(np.float32, copy=False)
        cine.ijkToRas = _volumeIjkToRas(volume)
        cine.ownerNode = volume
        cine.referenceVolume = volume
        T = cine.image.shape[0]
        labels = [s.strip() for s in (volume.GetAttribute("MultiVolume.FrameLabels") or "").split(",") if s.strip()]
        cine.indexValues = labels if len(labels) == T else [str(i) for i in range(T)]
        unit = volume.GetAttribute("MultiVolume.FrameIdentifyingDICOMTagUnits") or ("ms" if len(labels) == T else "")
        cine.indexName = "time" if len(labels) == T else "frame"
        cine.indexUnit = unit
        cine.timesMs, cine.timesKnown = _timesFromIndex(cine.indexValues, cine.indexName, cine.indexUnit)
        # A 4-D volume has no browser: the first run makes one (with a copy of the frames) and later runs reuse it.
        for browser in self._browsersWithRole("browser"):
            if _inputOf(browser) is volume and browser.GetMasterSequenceNode() is not None:
                cine.browserNode = browser
                cine.sequenceNode = browser.GetMasterSequenceNode()

    def currentSliceIndex(self, inputNode, sliceNode=None):
        """Index (0-based) of the input's slice at the centre of a slice view (Red by default)."""
        cine = self.readCine(inputNode)
        if sliceNode is None:
            sliceNode = self.scene.GetNodeByID("vtkMRMLSliceNodeRed") or self.scene.GetFirstNodeByClass("vtkMRMLSliceNode")
        if sliceNode is None:
            raise CardiacQuanRunError("there is no slice view to take the current slice from")
        sliceToRas = sliceNode.GetSliceToRAS()
        ras = np.array([sliceToRas.GetElement(i, 3) for i in range(3)] + [1.0])
        volume = cine.referenceVolume
        if volume is not None and volume.GetParentTransformNode() is not None:
            t = vtk.vtkGeneralTransform()
            volume.GetParentTransformNode().GetTransformFromWorld(t)
            ras[:3] = t.TransformPoint(ras[:3])
        ijk = np.linalg.solve(cine.ijkToRas, ras)
        k = int(round(ijk[2]))
        Z = cine.image.shape[1]
        if not 0 <= k < Z:
            raise CardiacQuanRunError(f"the {sliceNode.GetName()} view is not on a slice of the cine (slice {k} of 0..{Z - 1})")
        return k

    # -- running -----------------------------------------------------------------------
    def quantify(self, inputNode, slices="all", labels=None, keepTemporaryFiles=False, showResults=True,
                 progressCallback=None, logCallback=None, timeout=None):
        """Quantify a cine and create/replace the outputs; blocks until done. Returns CardiacQuanOutputs.

        slices: "all", "mid" (mid-ventricular slice chosen by the engine) or a slice index.
        labels: optional (T, Z, R, C) label array (0 bg, 1 RV, 2 LV myocardium, 3 LV cavity);
                given, the network is not run and the indices are measured on these masks.
        Raises CardiacQuanRunError (one-line message) when the run fails; the scene is then unchanged.
        """
        job = self.startQuantify(inputNode, slices=slices, labels=labels, keepTemporaryFiles=keepTemporaryFiles,
                                 showResults=showResults, progressCallback=progressCallback, logCallback=logCallback)
        return self._finish(job.wait(timeout))

    def requantify(self, inputNode, segmentationNode=None, slices="all", keepTemporaryFiles=False, showResults=True,
                   progressCallback=None, logCallback=None, timeout=None):
        """Recompute the indices from the (edited) segmentation without running the network.

        segmentationNode: this module's segmentation (default), its sequence, or another segmentation
        sequence with one item per frame (segments named "LV myocardium", "LV cavity", "RV cavity").
        """
        job = self.startRequantify(inputNode, segmentationNode=segmentationNode, slices=slices,
                                   keepTemporaryFiles=keepTemporaryFiles, showResults=showResults,
                                   progressCallback=progressCallback, logCallback=logCallback)
        return self._finish(job.wait(timeout))

    @staticmethod
    def _finish(job):
        if job.state != "succeeded":
            raise CardiacQuanRunError(job.errorMessage or job.state)
        return job.outputs

    def startRequantify(self, inputNode, segmentationNode=None, **kwargs):
        """Start a re-quantification (see requantify); returns a QuantifyJob."""
        cine = self.readCine(inputNode)
        labels = self.labelsFromSegmentation(cine, segmentationNode)
        return self._start(cine, labels=labels, **kwargs)

    def startQuantify(self, inputNode, slices="all", labels=None, **kwargs):
        """Start a quantification in the engine process; returns a QuantifyJob (poll() or wait() it)."""
        cine = self.readCine(inputNode)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != cine.image.shape:
                raise CardiacQuanRunError(f"labels have shape {labels.shape}, the cine {cine.image.shape}")
            try:
                labels = exchange.checked_labels(labels)
            except exchange.ExchangeError as e:
                raise CardiacQuanRunError(str(e)) from None
        return self._start(cine, slices=slices, labels=labels, **kwargs)

    def _start(self, cine, slices="all", labels=None, keepTemporaryFiles=False, showResults=True,
               progressCallback=None, logCallback=None, finishedCallback=None):
        slicesArg = self._slicesArgument(slices, cine)
        if IN_SLICER_APP and not self.pythonExecutable:  # the engine runs in this same Python installation
            missing = self.missingRequirements(network=labels is None)
            if missing:
                raise CardiacQuanRunError(
                    "missing Python packages: " + ", ".join(m["text"] for m in missing) +
                    " (install them with the module's 'Check / install Python packages' button or "
                    "logic.installRequirements())")
        workDir = tempfile.mkdtemp(prefix="CardiacQuan-", dir=self._temporaryBase())
        try:
            inputPath = os.path.join(workDir, "cine.npz")
            spacing, origins, direction, thickness = cine.engineGeometry()
            exchange.save_cine_npz(inputPath, cine.image, spacing, origins, direction,
                                   cine.timesMs if cine.timesKnown else None,
                                   slice_thickness=thickness, source=cine.name)
            outDir = os.path.join(workDir, "out")
            command = [self._python(), "-m", self.engineModule, "quantify", inputPath, "-o", outDir,
                       "--slices", slicesArg]
            if labels is not None:
                labelsPath = os.path.join(workDir, "labels.npz")
                exchange.save_results_npz(labelsPath, labels)
                command += ["--labels", labelsPath]
            command += list(self.engineExtraArguments)
            env = os.environ.copy()
            env["PYTHONPATH"] = os.pathsep.join(list(self.enginePythonPaths) +
                                                ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
            env["PYTHONUNBUFFERED"] = "1"
            env["PYTHONIOENCODING"] = "utf-8"
            logging.info("CardiacQuan: running %s", " ".join(command))
            process = EngineProcess(command, env=env, cwd=workDir).start()
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        job = QuantifyJob(self, cine, slicesArg, workDir, process, labels is not None, keepTemporaryFiles,
                          progressCallback=progressCallback, logCallback=logCallback,
                          finishedCallback=finishedCallback, showResults=showResults)
        return job

    def _python(self):
        """The engine's Python: Slicer's own (PythonSlicer) inside Slicer, this interpreter elsewhere."""
        if self.pythonExecutable:
            return self.pythonExecutable
        if IN_SLICER_APP:
            exe = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
            candidates = [shutil.which("PythonSlicer"), os.path.join(os.path.dirname(sys.executable), exe)]
            home = getattr(getattr(slicer, "app", None), "slicerHome", None)
            if home:
                candidates.append(os.path.join(home, "bin", exe))
            for c in candidates:
                if c and os.path.isfile(c):
                    return c
        return sys.executable

    def _temporaryBase(self):
        if self.temporaryDirectory:
            os.makedirs(self.temporaryDirectory, exist_ok=True)
            return self.temporaryDirectory
        app = getattr(slicer, "app", None)
        path = getattr(app, "temporaryPath", None) if app is not None else None
        return path if path and os.path.isdir(path) else None

    @staticmethod
    def _slicesArgument(slices, cine):
        if slices is None or slices == "all" or slices == SLICE_CHOICES[0]:
            return "all"
        if slices == "mid" or slices == SLICE_CHOICES[2]:
            return "mid"
        try:   # 1.7 or True are not slice numbers; "3" and numpy integers are
            if isinstance(slices, (bool, np.bool_)) or float(slices) != int(float(slices)):
                raise ValueError
            k = int(float(slices))
        except (TypeError, ValueError):
            raise CardiacQuanRunError(f"slices must be 'all', 'mid' or a slice index, got {slices!r}") from None
        Z = cine.image.shape[1]
        if not 0 <= k < Z:
            raise CardiacQuanRunError(f"slice {k} does not exist (the cine has slices 0..{Z - 1})")
        return str(k)

    # -- segmentation <-> label arrays ---------------------------------------------------
    def labelsFromSegmentation(self, cine, segmentationNode=None):
        """(T, Z, R, C) uint8 label array from a per-frame segmentation (edits of the proxy included)."""
        sequence = None
        if segmentationNode is None:
            outputs = self.findOutputs(cine.ownerNode)
            sequence = outputs.segmentationSequence
            if sequence is None:
                raise CardiacQuanRunError(f"'{cine.name}' has no CardiacQuan segmentation yet: run Quantify LV first")
        elif segmentationNode.IsA("vtkMRMLSequenceNode"):
            sequence = segmentationNode
        elif segmentationNode.IsA("vtkMRMLSegmentationNode"):
            seqLogic = self.moduleLogic("Sequences")
            browser = seqLogic.GetFirstBrowserNodeForProxyNode(segmentationNode) if seqLogic else None
            sequence = browser.GetSequenceNode(segmentationNode) if browser else None
            if sequence is None:
                raise CardiacQuanRunError(f"'{segmentationNode.GetName()}' is not recorded per frame in a sequence")
        else:
            raise CardiacQuanRunError(f"'{segmentationNode.GetName()}' is not a segmentation")
        if "Segmentation" not in (sequence.GetDataNodeClassName() or ""):
            raise CardiacQuanRunError(f"the sequence '{sequence.GetName()}' does not hold segmentations")

        # Make sure the frame being edited right now is written back into the sequence.
        seqLogic = self.moduleLogic("Sequences")
        if seqLogic is not None:
            browsers = vtk.vtkCollection()
            seqLogic.GetBrowserNodesForSequenceNode(sequence, browsers)
            for i in range(browsers.GetNumberOfItems()):
                browser = browsers.GetItemAsObject(i)
                proxy = browser.GetProxyNode(sequence)
                if proxy is not None and browser.GetSaveChanges(sequence):
                    seqLogic.UpdateSequencesFromProxyNodes(browser, proxy)

        T = cine.image.shape[0]
        reference = cine.frameGeometryImage()
        labels = np.zeros(cine.image.shape, dtype=np.uint8)
        for t in range(T):
            item = sequence.GetDataNodeAtValue(cine.indexValues[t], True)
            if item is None:
                raise CardiacQuanRunError(f"the segmentation has no item for frame {t} ({cine.indexName} {cine.indexValues[t]})")
            labels[t] = _segmentationToLabels(item, reference, cine.image.shape[1:])
        if not np.any(labels == LABEL_MYOCARDIUM) or not np.any(labels == LABEL_LV_CAVITY):
            raise CardiacQuanRunError("the segmentation has no LV myocardium or no LV cavity")
        return labels

    # -- outputs -----------------------------------------------------------------------
    def findOutputs(self, node) -> CardiacQuanOutputs:
        """The outputs of the last run on a cine (given as the cine or any of its nodes)."""
        out = CardiacQuanOutputs()
        owner = self._ownerOf(node)
        if owner is None:
            return out
        scene = self.scene
        for node in _allNodes(scene):
            role = node.GetAttribute(ROLE_ATTRIBUTE)
            if role is None or _inputOf(node) is not owner:
                continue
            if role == "segmentation-sequence":
                out.segmentationSequence = node
            elif role == "sectors-sequence":
                out.sectorsSequence = node
            elif role == "indices-table":
                out.indicesTable = node
            elif role == "curves-table":
                out.curvesTable = node
            elif role == "chart":
                out.chart = node
            elif role.startswith("series"):
                out.series.append(node)
            elif role == "browser":
                out.browser = node
            elif role in ("segmentation", "sectors"):
                out.leftovers.append(node)
        seqLogic = self.moduleLogic("Sequences")
        for seq, attr in ((out.segmentationSequence, "segmentation"), (out.sectorsSequence, "sectors")):
            if seq is not None and seqLogic is not None:
                browser = seqLogic.GetFirstBrowserNodeForSequenceNode(seq)
                if browser is not None:
                    setattr(out, attr, browser.GetProxyNode(seq))
                    out.browser = out.browser or browser
        # proxies whose sequence the user deleted: no longer shown per frame, removed on the next run
        out.leftovers = [n for n in out.leftovers if n is not out.segmentation and n is not out.sectors]
        shNode = scene.GetSubjectHierarchyNode()
        if shNode is not None:
            items = vtk.vtkIdList()
            shNode.GetItemChildren(shNode.GetSceneItemID(), items, True)
            for i in range(items.GetNumberOfIds()):
                item = items.GetId(i)
                if shNode.GetItemAttribute(item, FOLDER_ATTRIBUTE) == owner.GetID():
                    out.folderItemID = item
        if out.indicesTable is not None:
            out.summary = _summaryFromTable(out.indicesTable)
        return out

    def _ownerOf(self, node):
        if node is None:
            return None
        if _inputOf(node) is not None:
            return _inputOf(node)
        if node.IsA("vtkMRMLSequenceNode"):
            return node
        seqLogic = self.moduleLogic("Sequences")
        browser = seqLogic.GetFirstBrowserNodeForProxyNode(node) if seqLogic else None
        if browser is not None:
            seq = browser.GetSequenceNode(node)
            if seq is not None and _inputOf(seq) is not None:
                return _inputOf(seq)
            if browser.GetAttribute(ROLE_ATTRIBUTE) == "browser" and _inputOf(browser) is not None:
                return _inputOf(browser)
            return seq
        return node

    def _browsersWithRole(self, role):
        scene = self.scene
        out = []
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
            b = scene.GetNthNodeByClass(i, "vtkMRMLSequenceBrowserNode")
            if b.GetAttribute(ROLE_ATTRIBUTE) == role:
                out.append(b)
        return out

    def _importResults(self, job):
        """Create the output nodes from the engine's files; on any error undo everything."""
        outDir = job.outputDirectory
        cine = job.cine
        indicesPath = os.path.join(outDir, "indices.csv")
        summaryPath = os.path.join(outDir, "summary.json")
        resultsPath = os.path.join(outDir, "results.npz")
        for p in (indicesPath, summaryPath, resultsPath):
            if not os.path.isfile(p):
                raise CardiacQuanRunError(f"the engine finished but wrote no {os.path.basename(p)}")
        with open(summaryPath, encoding="utf-8") as f:
            try:
                summary = json.load(f)
            except ValueError as e:
                raise CardiacQuanRunError(f"summary.json is not valid JSON ({e})") from None
        columns, rows = _readIndicesCsv(indicesPath)
        try:
            results = exchange.load_results_npz(resultsPath)
        except exchange.ExchangeError as e:
            raise CardiacQuanRunError(str(e)) from None
        if results["labels"].shape != cine.image.shape:
            raise CardiacQuanRunError(f"the engine's masks have shape {results['labels'].shape}, the cine {cine.image.shape}")

        scene = self.scene
        old = self.findOutputs(cine.ownerNode)
        tx = _SceneTransaction(scene)
        try:
            out = CardiacQuanOutputs()
            out.summary = summary
            out.warnings = [str(w) for w in (summary.get("warnings") or [])]
            browser = self._ensureBrowser(cine, tx)
            out.browser = browser
            base = cine.name
            out.segmentationSequence = self._addSegmentationSequence(
                cine, results["labels"], TISSUE_SEGMENTS, f"{base} LV segmentation", "segmentation-sequence", tx)
            if results.get("sectors") is not None:
                sectorDefs = [(v, i, n, c, SECTOR_TERMINOLOGY) for v, i, n, c in SECTOR_SEGMENTS]
                out.sectorsSequence = self._addSegmentationSequence(
                    cine, results["sectors"], sectorDefs, f"{base} RWT sectors", "sectors-sequence", tx)
            out.indicesTable = self._addIndicesTable(cine, columns, rows, summary, f"{base} LV indices", tx)
            out.curvesTable, out.chart, out.series = self._addChart(cine, rows, summary, out.indicesTable, base, tx)
            # show the segmentations per frame on the cine's browser
            for seq, attr, fill in ((out.segmentationSequence, "segmentation", 0.35), (out.sectorsSequence, "sectors", 0.6)):
                if seq is None:
                    continue
                tx.addToBrowser(browser, seq)
                browser.SetSaveChanges(seq, True)
                proxy = browser.GetProxyNode(seq)
                if proxy is None:
                    raise CardiacQuanRunError("the Sequences module did not create the proxy segmentation")
                tx.created(proxy)
                tx.intendedNames.append((proxy, dict(tx.intendedNames).get(seq, seq.GetName())))
                _markOutput(proxy, attr, cine.ownerNode)   # traceable even if its sequence is deleted
                if cine.referenceVolume is not None and cine.referenceVolume.GetTransformNodeID():
                    proxy.SetAndObserveTransformNodeID(cine.referenceVolume.GetTransformNodeID())
                _styleSegmentationDisplay(proxy, fill, outline=(attr == "segmentation"))
                setattr(out, attr, proxy)
            out.folderItemID = self._placeInSubjectHierarchy(cine, out, tx)
            # the new outputs are complete: drop the old ones, then take their names
            self._removeOutputs(old, keep=set(id(n) for n in out.nodes()) | {id(browser)})
            for node, name in tx.intendedNames:
                if node.GetName() != name:
                    node.SetName(name)
        except Exception:
            tx.rollback()
            raise
        if job.showResults:
            try:
                self.showResults(out)
            except Exception:  # showing is a convenience, never a failure
                logging.debug("CardiacQuan: could not show the results", exc_info=True)
        return out

    def _ensureBrowser(self, cine, tx):
        if cine.browserNode is not None:
            return cine.browserNode
        scene = self.scene
        if cine.sequenceNode is None:
            # 4-D volume: copy the frames into a volume sequence of our own so a browser can play them
            T = cine.image.shape[0]
            seq = tx.add(scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(f"{cine.name} frames")))
            seq.SetIndexName(cine.indexName)
            seq.SetIndexUnit(cine.indexUnit)
            _markOutput(seq, "frames-sequence", cine.ownerNode)
            for t in range(T):
                v = slicer.vtkMRMLScalarVolumeNode()
                img = vtk.vtkImageData()
                Z, R, C = cine.image.shape[1:]
                img.SetDimensions(C, R, Z)
                img.AllocateScalars(vtk.VTK_FLOAT, 1)
                vtk_np.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(Z, R, C)[:] = cine.image[t]
                v.SetAndObserveImageData(img)
                v.SetIJKToRASMatrix(_vtkMatrix(cine.ijkToRas))
                seq.SetDataNodeAtValue(v, cine.indexValues[t])
            cine.sequenceNode = seq
        browser = tx.add(scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(f"{cine.name} browser")))
        _markOutput(browser, "browser", cine.ownerNode)
        browser.SetAndObserveMasterSequenceNodeID(cine.sequenceNode.GetID())
        proxy = browser.GetProxyNode(cine.sequenceNode)
        if proxy is not None:
            tx.created(proxy)
            cine.referenceVolume = cine.referenceVolume or proxy
        cine.browserNode = browser
        return browser

    def _addSegmentationSequence(self, cine, labelArray, segmentDefs, name, role, tx):
        scene = self.scene
        seq = tx.add(scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name)), name)
        seq.SetIndexName(cine.indexName)
        seq.SetIndexUnit(cine.indexUnit)
        if cine.indexType is not None:
            seq.SetIndexType(cine.indexType)
        _markOutput(seq, role, cine.ownerNode)
        geometry = slicer.vtkSegmentationConverter.SerializeImageGeometry(cine.frameGeometryImage())
        extent = _labelExtent(labelArray)
        ijkToRas = _vtkMatrix(cine.ijkToRas)
        for t in range(labelArray.shape[0]):
            segNode = _labelsToSegmentationNode(labelArray[t], extent, ijkToRas, segmentDefs, geometry)
            seq.SetDataNodeAtValue(segNode, cine.indexValues[t])
        return seq

    def _addIndicesTable(self, cine, columns, rows, summary, name, tx):
        scene = self.scene
        table = tx.add(scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name)), name)
        _markOutput(table, "indices-table", cine.ownerNode)
        _fillTable(table, columns, rows)
        ed, es = summary.get("ed_frame"), summary.get("es_frame")
        mid = summary.get("mid_slice")
        table.SetAttribute("CardiacQuan.EDFrame", "" if ed is None else str(int(ed)))
        table.SetAttribute("CardiacQuan.ESFrame", "" if es is None else str(int(es)))
        table.SetAttribute("CardiacQuan.MidSlice", "" if mid is None else str(int(mid)))
        if ed is not None and 0 <= int(ed) < len(cine.indexValues):
            table.SetAttribute("CardiacQuan.EDIndexValue", cine.indexValues[int(ed)])
        if es is not None and 0 <= int(es) < len(cine.indexValues):
            table.SetAttribute("CardiacQuan.ESIndexValue", cine.indexValues[int(es)])
        table.SetAttribute("CardiacQuan.Slices", json.dumps(summary.get("slices") or []))
        table.SetAttribute("CardiacQuan.SoftwareVersion", str(summary.get("software_version", "")))
        model = summary.get("model", "")
        table.SetAttribute("CardiacQuan.Model", model if isinstance(model, str) else json.dumps(model))
        table.SetAttribute("CardiacQuan.Warnings", json.dumps(summary.get("warnings") or []))
        if isinstance(summary.get("volumes"), dict):
            table.SetAttribute("CardiacQuan.Volumes", json.dumps(summary["volumes"]))
        table.SetAttribute("CardiacQuan.TimesKnown", "1" if cine.timesKnown else "0")
        return table

    def _addChart(self, cine, rows, summary, indicesTable, base, tx):
        scene = self.scene
        plotSlice = _plotSlice(rows, summary)
        sliceRows = sorted((r for r in rows if _int(r.get("slice")) == plotSlice), key=lambda r: _int(r.get("frame")))
        if not sliceRows:
            return None, None, []
        ed, es = _sliceEdEs(summary, plotSlice)
        frames = np.array([_int(r.get("frame")) for r in sliceRows])
        times = np.array([_float(r.get("time_ms")) for r in sliceRows])
        if not cine.timesKnown or not np.all(np.isfinite(times)):
            times = frames.astype(float)
        cav = np.array([_float(r.get("cavity_area_mm2")) for r in sliceRows])
        myo = np.array([_float(r.get("myocardium_area_mm2")) for r in sliceRows])
        phase = np.array([_int(r.get("phase")) for r in sliceRows])
        top = np.nanmax(np.concatenate([cav, myo])) if np.any(np.isfinite(np.concatenate([cav, myo]))) else 1.0
        systole = np.where(phase == 1, top * 1.08, np.nan)
        edMarker = np.where(frames == ed, cav, np.nan)
        esMarker = np.where(frames == es, cav, np.nan)

        curves = tx.add(scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{base} LV area curves")),
                        f"{base} LV area curves")
        _markOutput(curves, "curves-table", cine.ownerNode)
        curves.SetAttribute("CardiacQuan.Slice", str(plotSlice))
        curves.SetNodeReferenceID("CardiacQuanIndicesTable", indicesTable.GetID())
        xName = "time_ms" if cine.timesKnown else "frame"
        cols = [("frame", frames.astype(float), "", "Frame index"),
                ("time_ms", times, "ms" if cine.timesKnown else "", "Time of the frame"),
                ("cavity_area_mm2", cav, "mm\u00b2", COLUMN_INFO["cavity_area_mm2"][1]),
                ("myocardium_area_mm2", myo, "mm\u00b2", COLUMN_INFO["myocardium_area_mm2"][1]),
                ("systole", systole, "", "Systole band (frames after ED up to ES)"),
                ("ed_marker", edMarker, "mm\u00b2", "Cavity area at end-diastole"),
                ("es_marker", esMarker, "mm\u00b2", "Cavity area at end-systole")]
        for colName, values, unit, desc in cols:
            arr = vtk.vtkDoubleArray()
            arr.SetName(colName)
            for v in values:
                arr.InsertNextValue(float(v))
            curves.AddColumn(arr)
            if unit:
                curves.SetColumnUnitLabel(colName, unit)
            curves.SetColumnDescription(colName, desc)

        chart = tx.add(scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(f"{base} LV areas")),
                       f"{base} LV areas")
        _markOutput(chart, "chart", cine.ownerNode)
        edTxt = f"ED frame {ed}" if ed is not None else "ED ?"
        esTxt = f"ES frame {es}" if es is not None else "ES ?"
        chart.SetTitle(f"LV areas, slice {plotSlice} ({edTxt}, {esTxt})")
        chart.SetXAxisTitle("Time (ms)" if cine.timesKnown else "Frame")
        chart.SetYAxisTitle("Area (mm\u00b2)")
        chart.SetLegendVisibility(True)
        series = []
        specs = [("cavity", "LV cavity area", "cavity_area_mm2", (0.90, 0.25, 0.25), 3, "circle"),
                 ("myocardium", "LV myocardium area", "myocardium_area_mm2", (0.30, 0.75, 0.35), 3, "square"),
                 ("systole", "Systole (ED to ES)", "systole", (0.55, 0.55, 0.55), 8, None),
                 ("ed", "End-diastole (ED)", "ed_marker", (0.10, 0.10, 0.60), 0, "diamond"),
                 ("es", "End-systole (ES)", "es_marker", (0.85, 0.45, 0.00), 0, "diamond")]
        for key, title, yName, color, width, marker in specs:
            s = tx.add(scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(f"{base} {title}")),
                       f"{base} {title}")
            _markOutput(s, f"series-{key}", cine.ownerNode)
            s.SetAndObserveTableNodeID(curves.GetID())
            s.SetXColumnName(xName)
            s.SetYColumnName(yName)
            s.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            s.SetColor(*color)
            if width:
                s.SetLineWidth(width)
                s.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
            else:
                s.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleNone)
            s.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.GetMarkerStyleFromString(marker) if marker
                             else slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
            s.SetMarkerSize(14 if key in ("ed", "es") else 7)
            chart.AddAndObservePlotSeriesNodeID(s.GetID())
            series.append(s)
        return curves, chart, series

    def _placeInSubjectHierarchy(self, cine, out, tx):
        """Put the outputs in a folder beside the input (same parent item)."""
        scene = self.scene
        shNode = scene.GetSubjectHierarchyNode()
        if shNode is None:
            return 0
        sceneItem = shNode.GetSceneItemID()
        inputItem = shNode.GetItemByDataNode(cine.inputNode) or shNode.GetItemByDataNode(cine.ownerNode)
        parent = shNode.GetItemParent(inputItem) if inputItem else sceneItem
        folder = shNode.CreateFolderItem(parent or sceneItem, f"{cine.name} CardiacQuan")
        tx.createdItem(folder)
        shNode.SetItemAttribute(folder, FOLDER_ATTRIBUTE, cine.ownerNode.GetID())
        members = list(out.nodes())
        if out.browser is not None and out.browser.GetAttribute(ROLE_ATTRIBUTE):
            members.append(out.browser)  # a browser this module made (4-D input)
        if cine.sequenceNode is not None and cine.sequenceNode.GetAttribute(ROLE_ATTRIBUTE) == "frames-sequence":
            members.append(cine.sequenceNode)
            proxy = out.browser.GetProxyNode(cine.sequenceNode) if out.browser is not None else None
            if proxy is not None:
                members.append(proxy)
        for node in members:
            item = shNode.GetItemByDataNode(node)
            if item:
                shNode.SetItemParent(item, folder)
            else:  # outside the Slicer application nothing creates items for new nodes
                shNode.CreateItem(folder, node)
        return folder

    def _removeOutputs(self, old, keep=frozenset()):
        scene = self.scene
        for seq, proxy in ((old.segmentationSequence, old.segmentation), (old.sectorsSequence, old.sectors)):
            if seq is None:
                continue
            seqLogic = self.moduleLogic("Sequences")
            browsers = vtk.vtkCollection()
            if seqLogic is not None:
                seqLogic.GetBrowserNodesForSequenceNode(seq, browsers)
            for i in range(browsers.GetNumberOfItems()):
                b = browsers.GetItemAsObject(i)
                p = b.GetProxyNode(seq)
                b.RemoveSynchronizedSequenceNode(seq.GetID())
                if p is not None and id(p) not in keep:
                    _removeNode(scene, p)
            if proxy is not None and id(proxy) not in keep:
                _removeNode(scene, proxy)
        for node in [old.chart, *old.series, old.curvesTable, old.indicesTable, old.segmentationSequence,
                     old.sectorsSequence, *old.leftovers]:
            if node is not None and id(node) not in keep:
                _removeNode(scene, node)
        shNode = scene.GetSubjectHierarchyNode()
        if old.folderItemID and shNode is not None:
            # keep nodes that live on (the browser, a copied frames sequence) by moving them up first
            parent = shNode.GetItemParent(old.folderItemID)
            children = vtk.vtkIdList()
            shNode.GetItemChildren(old.folderItemID, children)
            for i in range(children.GetNumberOfIds()):
                shNode.SetItemParent(children.GetId(i), parent)
            shNode.RemoveItem(old.folderItemID, False, False)

    def showResults(self, outputs):
        """Show the chart in a plot view and the segmentation in the slice views."""
        if outputs is None or outputs.get("chart") is None:
            return
        plotsLogic = self.moduleLogic("Plots")
        if plotsLogic is not None and hasattr(plotsLogic, "ShowChartInLayout"):
            plotsLogic.ShowChartInLayout(outputs.chart)
        else:
            appLogic = self.appLogic
            selection = appLogic.GetSelectionNode() if appLogic is not None else None
            if selection is not None:
                selection.SetActivePlotChartID(outputs.chart.GetID())
        if IN_SLICER_APP and outputs.segmentation is not None and outputs.browser is not None:
            slicer.modules.sequences.setToolBarActiveBrowserNode(outputs.browser)

    def resultsSummary(self, indicesTable) -> str:
        """A few lines for the GUI: ED/ES frames and the mid slice's indices at ED and ES."""
        if indicesTable is None:
            return ""
        s = _summaryFromTable(indicesTable)
        columns, rows = _tableRows(indicesTable)
        ed, es, mid = s.get("ed_frame"), s.get("es_frame"), s.get("mid_slice")
        lines = []
        timesKnown = indicesTable.GetAttribute("CardiacQuan.TimesKnown") == "1"

        def frameText(label, f):
            if f is None:
                return f"{label}: -"
            row = next((r for r in rows if _int(r.get("frame")) == f), None)
            t = _float(row.get("time_ms")) if row is not None else float("nan")
            return f"{label} frame {f}" + (f" ({t:.0f} ms)" if timesKnown and math.isfinite(t) else "")

        lines.append(frameText("ED", ed) + ", " + frameText("ES", es))
        try:
            vol = json.loads(indicesTable.GetAttribute("CardiacQuan.Volumes") or "{}")
        except ValueError:
            vol = {}
        if vol.get("edv_ml") is not None and vol.get("esv_ml") is not None:
            text = f"EDV {vol['edv_ml']:.1f} mL, ESV {vol['esv_ml']:.1f} mL"
            if vol.get("ef_percent") is not None:
                text += f", EF {vol['ef_percent']:.0f} %"
            if vol.get("lv_mass_ed_g") is not None:
                text += f", LV mass {vol['lv_mass_ed_g']:.0f} g"
            lines.append(text + " (slice summation)")
        plotSlice = mid if mid is not None else (min(_int(r.get("slice")) for r in rows) if rows else None)
        lines.append(f"Slices quantified: {len(set(_int(r.get('slice')) for r in rows))}; mid-ventricular slice: "
                     f"{'-' if mid is None else mid}")
        sliceEd, sliceEs = _sliceEdEs(s, plotSlice)
        for label, f in (("ED", sliceEd), ("ES", sliceEs)):
            row = next((r for r in rows if _int(r.get("slice")) == plotSlice and _int(r.get("frame")) == f), None)
            if row is None:
                continue
            dims = [_float(row.get(f"dim{i}_mm")) for i in (1, 2, 3)]
            rwt = [_float(row.get(f"rwt{i}_mm")) for i in range(1, 7)]
            lines.append(f"Slice {plotSlice} at {label} (frame {f}): cavity {_float(row.get('cavity_area_mm2')):.0f} mm\u00b2, "
                         f"myocardium {_float(row.get('myocardium_area_mm2')):.0f} mm\u00b2, "
                         f"D1-D3 {' / '.join(f'{d:.1f}' for d in dims)} mm, "
                         f"RWT1-6 {' / '.join(f'{w:.1f}' for w in rwt)} mm")
        return "\n".join(lines)


# ======================================================================================
# Helpers (module level so tests and scripts can use them)
# ======================================================================================
class _SceneTransaction:
    """Records what an import adds so a failure can put the scene back as it was."""

    def __init__(self, scene):
        self.scene = scene
        self.nodes = []
        self.items = []
        self.browserAdds = []
        self.intendedNames = []

    def add(self, node, name=None):
        """Record a node this import added; `name` is the name it takes once the old outputs are gone."""
        self.nodes.append(node)
        if name is not None:
            self.intendedNames.append((node, name))
        return node

    def created(self, node):
        if node is not None and node not in self.nodes:
            self.nodes.append(node)
        return node

    def createdItem(self, item):
        self.items.append(item)

    def addToBrowser(self, browser, sequence):
        browser.AddSynchronizedSequenceNode(sequence)
        self.browserAdds.append((browser, sequence))

    def rollback(self):
        for browser, seq in reversed(self.browserAdds):
            proxy = browser.GetProxyNode(seq)
            browser.RemoveSynchronizedSequenceNode(seq.GetID())
            if proxy is not None and proxy.GetScene() is self.scene:
                self.created(proxy)
        shNode = self.scene.GetSubjectHierarchyNode()
        for item in reversed(self.items):
            if shNode is not None:
                shNode.RemoveItem(item, False, False)
        for node in reversed(self.nodes):
            _removeNode(self.scene, node)


def _removeNode(scene, node):
    """Remove a node with its display and storage nodes."""
    if node is None or node.GetScene() is not scene:
        return
    shNode = scene.GetSubjectHierarchyNode()
    item = shNode.GetItemByDataNode(node) if shNode is not None else 0
    if item:
        shNode.RemoveItem(item, False, False)
    if node.IsA("vtkMRMLDisplayableNode"):
        for i in reversed(range(node.GetNumberOfDisplayNodes())):
            dn = node.GetNthDisplayNode(i)
            if dn is not None and dn.GetScene() is scene:
                scene.RemoveNode(dn)
    if node.IsA("vtkMRMLStorableNode"):
        for i in reversed(range(node.GetNumberOfStorageNodes())):
            sn = node.GetNthStorageNode(i)
            if sn is not None and sn.GetScene() is scene:
                scene.RemoveNode(sn)
    scene.RemoveNode(node)


def _inputOf(node):
    """The input a CardiacQuan output belongs to, else None.

    Asks only nodes that have the reference role: GetNodeReference() adds an empty role to a node
    that has none, and input nodes must stay untouched.
    """
    if node is None:
        return None
    for i in range(node.GetNumberOfNodeReferenceRoles()):
        if node.GetNthNodeReferenceRole(i) == INPUT_REFERENCE_ROLE:
            return node.GetNodeReference(INPUT_REFERENCE_ROLE)
    return None


def _markOutput(node, role, owner):
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, owner.GetID())


def _allNodes(scene):
    nodes = scene.GetNodes()
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def _versionTuple(v):
    parts = []
    for p in re.split(r"[.+-]", str(v)):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts) or (0,)


def _timesFromIndex(values, name, unit):
    try:
        t = np.array([float(v) for v in values])
    except ValueError:
        return np.arange(len(values), dtype=float), False
    u = (unit or "").strip().lower()
    if u in ("ms", "msec", "millisecond", "milliseconds"):
        return t, True
    if u in ("s", "sec", "second", "seconds"):
        return t * 1000.0, True
    return t, False


def _labelExtent(labels):
    """Smallest (i0,i1,j0,j1,k0,k1) holding every non-zero label of every frame, plus a margin."""
    T, Z, R, C = labels.shape
    nz = np.nonzero(np.any(labels > 0, axis=0))
    if nz[0].size == 0:
        return (0, 0, 0, 0, 0, 0)
    k0, k1 = int(nz[0].min()), int(nz[0].max())
    j0, j1 = max(int(nz[1].min()) - 2, 0), min(int(nz[1].max()) + 2, R - 1)
    i0, i1 = max(int(nz[2].min()) - 2, 0), min(int(nz[2].max()) + 2, C - 1)
    return (i0, i1, j0, j1, k0, k1)


def _labelsToSegmentationNode(labels3d, extent, ijkToRas, segmentDefs, geometry):
    """A segmentation node (not in a scene) with one shared labelmap for the segments of one frame."""
    i0, i1, j0, j1, k0, k1 = extent
    oi = slicer.vtkOrientedImageData()
    oi.SetExtent(i0, i1, j0, j1, k0, k1)
    oi.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    oi.SetImageToWorldMatrix(ijkToRas)
    a = vtk_np.vtk_to_numpy(oi.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    a[:] = labels3d[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1]
    oi.Modified()
    node = slicer.vtkMRMLSegmentationNode()
    segmentation = node.GetSegmentation()
    binaryName = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if hasattr(segmentation, "SetSourceRepresentationName"):
        segmentation.SetSourceRepresentationName(binaryName)
    else:  # Slicer < 5.4
        segmentation.SetMasterRepresentationName(binaryName)
    segmentation.SetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), geometry)
    for value, segId, name, color, terminology in segmentDefs:
        seg = slicer.vtkSegment()
        seg.SetName(name)
        seg.SetNameAutoGenerated(False)
        seg.SetColor(*color)
        seg.SetColorAutoGenerated(False)
        seg.SetLabelValue(int(value))
        seg.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), oi)
        if hasattr(seg, "SetTerminology"):
            seg.SetTerminology(terminology)
        else:
            seg.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
        segmentation.AddSegment(seg, segId)
    return node


def _segmentationToLabels(segNode, reference, shapeZRC):
    """(Z, R, C) label array of one frame's segmentation, resampled on the frame grid."""
    segmentation = segNode.GetSegmentation()
    out = np.zeros(shapeZRC, dtype=np.uint8)
    byId = {d[1]: d[0] for d in TISSUE_SEGMENTS}
    byName = {d[2].lower(): d[0] for d in TISSUE_SEGMENTS}
    ids = vtk.vtkStringArray()
    segmentation.GetSegmentIDs(ids)
    # paint RV, then myocardium, then cavity (cavity wins where edits overlap)
    order = {LABEL_RV: 0, LABEL_MYOCARDIUM: 1, LABEL_LV_CAVITY: 2}
    found = []
    for i in range(ids.GetNumberOfValues()):
        segId = ids.GetValue(i)
        value = byId.get(segId) or byName.get(segmentation.GetSegment(segId).GetName().strip().lower())
        if value:
            found.append((order[value], segId, value))
    for _, segId, value in sorted(found):
        binary = slicer.vtkOrientedImageData()
        if not segNode.GetBinaryLabelmapRepresentation(segId, binary):
            continue
        e = binary.GetExtent()
        if e[0] > e[1] or e[2] > e[3] or e[4] > e[5]:
            continue
        resampled = slicer.vtkOrientedImageData()
        if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
                binary, reference, resampled, False, True):
            raise CardiacQuanRunError(f"could not resample segment '{segId}' onto the cine grid")
        e = resampled.GetExtent()
        arr = vtk_np.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(
            e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
        # a segment drawn beyond the cine's field of view (or one from another grid) keeps only
        # what lies on the cine: clip its extent, never shift it
        src, dst = [], []
        for lo, hi, n in ((e[4], e[5], shapeZRC[0]), (e[2], e[3], shapeZRC[1]), (e[0], e[1], shapeZRC[2])):
            a, b = max(lo, 0), min(hi, n - 1)
            if a > b:
                break
            src.append(slice(a - lo, b - lo + 1))
            dst.append(slice(a, b + 1))
        else:
            full = np.zeros(shapeZRC, dtype=bool)
            full[tuple(dst)] = arr[tuple(src)] > 0
            out[full] = value
    return out


def _styleSegmentationDisplay(segNode, fillOpacity, outline):
    dn = segNode.GetDisplayNode()
    if dn is None:
        segNode.CreateDefaultDisplayNodes()
        dn = segNode.GetDisplayNode()
    if dn is None:
        return
    dn.SetVisibility(True)
    dn.SetVisibility2DFill(True)
    dn.SetOpacity2DFill(fillOpacity)
    dn.SetVisibility2DOutline(outline)
    dn.SetOpacity2DOutline(1.0)
    dn.SetVisibility3D(False)


def _readIndicesCsv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = [dict(r) for r in reader]
    for required in ("slice", "frame", "cavity_area_mm2", "myocardium_area_mm2"):
        if required not in columns:
            raise CardiacQuanRunError(f"indices.csv has no '{required}' column")
    if not rows:
        raise CardiacQuanRunError("indices.csv has no rows")
    return columns, rows


def _fillTable(table, columns, rows):
    for name in columns:
        values = [r.get(name, "") for r in rows]
        if name in _STRING_COLUMNS:
            arr = vtk.vtkStringArray()
            for v in values:
                arr.InsertNextValue(str(v))
        elif name in _INT_COLUMNS:
            arr = vtk.vtkIntArray()
            for v in values:
                arr.InsertNextValue(_int(v, -1))
        else:
            numeric = [_float(v) for v in values]
            if all(math.isnan(x) for x in numeric) and any(str(v).strip() for v in values):
                arr = vtk.vtkStringArray()
                for v in values:
                    arr.InsertNextValue(str(v))
            else:
                arr = vtk.vtkDoubleArray()
                for x in numeric:
                    arr.InsertNextValue(x)
        arr.SetName(name)
        table.AddColumn(arr)
        unit, desc = COLUMN_INFO.get(name, ("", ""))
        if unit:
            table.SetColumnUnitLabel(name, unit)
        if desc:
            table.SetColumnDescription(name, desc)
    table.Modified()


def _tableRows(table):
    t = table.GetTable()
    columns = [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())]
    rows = []
    for r in range(t.GetNumberOfRows()):
        rows.append({columns[c]: t.GetValue(r, c).ToString() for c in range(len(columns))})
    return columns, rows


def _summaryFromTable(table):
    def attr(name):
        v = table.GetAttribute(name)
        return int(v) if v not in (None, "") else None

    try:
        slices = json.loads(table.GetAttribute("CardiacQuan.Slices") or "[]")
    except ValueError:
        slices = []
    return dict(ed_frame=attr("CardiacQuan.EDFrame"), es_frame=attr("CardiacQuan.ESFrame"),
                mid_slice=attr("CardiacQuan.MidSlice"), slices=slices)


def _plotSlice(rows, summary):
    present = sorted(set(_int(r.get("slice")) for r in rows))
    mid = summary.get("mid_slice")
    if mid is not None and int(mid) in present:
        return int(mid)
    return present[len(present) // 2] if present else 0


def _sliceEdEs(summary, sliceIndex):
    for s in summary.get("slices") or []:
        if _int(s.get("slice")) == sliceIndex:
            return s.get("ed_frame"), s.get("es_frame")
    return summary.get("ed_frame"), summary.get("es_frame")


def _int(v, default=None):
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return int(v.strip().lower() == "true")
    try:
        return int(float(v))
    except (TypeError, ValueError, OverflowError):
        return default


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


# ======================================================================================
# Self-test inside Slicer
# ======================================================================================
def makePhantomCine(nFrames=12, nSlices=3, size=64, spacing=1.6, seed=0):
    """A small synthetic short-axis cine: (image (T,Z,R,C) float32, labels (T,Z,R,C) uint8, ED, ES).

    The LV cavity contracts from frame 0 (ED) to frame nFrames//3 (ES) and relaxes back; the RV lies
    on the image's left (the septum side).  numpy only, for the in-Slicer self-test.
    """
    rng = np.random.default_rng(seed)
    T, Z, N = nFrames, nSlices, size
    es = max(1, T // 3)
    rr, cc = np.mgrid[0:N, 0:N].astype(float)
    image = np.zeros((T, Z, N, N), np.float32)
    labels = np.zeros((T, Z, N, N), np.uint8)
    for t in range(T):
        # contraction s: 0 at ED (frame 0), 1 at ES, smooth in between
        if t <= es:
            s = 0.5 * (1 - math.cos(math.pi * t / es))
        else:
            s = 0.5 * (1 + math.cos(math.pi * (t - es) / (T - es)))
        for z in range(Z):
            taper = 1.0 - 0.15 * abs(z - (Z - 1) / 2) / max((Z - 1) / 2, 1)
            rEndo = (9.0 - 3.0 * s) / spacing * 1.6 * taper
            rEpi = rEndo + (4.0 + 1.5 * s) / spacing * 1.6
            cy, cx = N / 2, N / 2 + 4
            d = np.hypot(rr - cy, cc - cx)
            rv = np.hypot((rr - cy) / 1.4, cc - (cx - rEpi - 6)) < 6 * taper
            lab = np.zeros((N, N), np.uint8)
            lab[rv & (d > rEpi)] = LABEL_RV
            lab[(d <= rEpi) & (d > rEndo)] = LABEL_MYOCARDIUM
            lab[d <= rEndo] = LABEL_LV_CAVITY
            labels[t, z] = lab
            img = np.choose(lab, [60.0, 220.0, 90.0, 240.0]).astype(np.float32)
            image[t, z] = img + rng.normal(0, 8, (N, N)).astype(np.float32)
    return image, labels, 0, es


if IN_SLICER_APP:

    class CardiacQuanTest(ScriptedLoadableModuleTest):
        """Runs inside Slicer (Developer mode: Reload and Test) on a generated phantom cine."""

        def setUp(self):
            slicer.mrmlScene.Clear()

        def runTest(self):
            self.setUp()
            self.test_quantifyGivenMasks()
            self.setUp()
            self.test_failureLeavesSceneUnchanged()
            self.setUp()
            self.test_networkPath()

        def _loadPhantom(self, nFrames=12):
            image, labels, ed, es = makePhantomCine(nFrames=nFrames)
            T, Z, R, C = image.shape
            seq = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "PhantomCine")
            seq.SetIndexName("time")
            seq.SetIndexUnit("ms")
            for t in range(T):
                v = slicer.vtkMRMLScalarVolumeNode()
                img = vtk.vtkImageData()
                img.SetDimensions(C, R, Z)
                img.AllocateScalars(vtk.VTK_FLOAT, 1)
                vtk_np.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(Z, R, C)[:] = image[t]
                v.SetAndObserveImageData(img)
                v.SetSpacing(1.6, 1.6, 8.0)
                v.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
                seq.SetDataNodeAtValue(v, f"{t * 40.0:g}")
            browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "PhantomCine browser")
            browser.SetAndObserveMasterSequenceNodeID(seq.GetID())
            proxy = browser.GetProxyNode(seq)
            return proxy, seq, browser, labels, ed, es

        def test_quantifyGivenMasks(self):
            self.delayDisplay("Quantify a phantom cine from given masks (no network)")
            proxy, seq, browser, labels, ed, es = self._loadPhantom()
            logic = CardiacQuanLogic()
            missing = logic.missingRequirements(network=False)
            if missing:
                self.delayDisplay("Skipped: missing " + ", ".join(m["name"] for m in missing))
                return
            before = vtk_np.vtk_to_numpy(seq.GetNthDataNode(0).GetImageData().GetPointData().GetScalars()).copy()
            out = logic.quantify(proxy, slices="all", labels=labels)
            self.assertIsNotNone(out.segmentation)
            self.assertEqual(out.segmentationSequence.GetNumberOfDataNodes(), seq.GetNumberOfDataNodes())
            self.assertEqual(out.indicesTable.GetAttribute("CardiacQuan.EDFrame"), str(ed))
            self.assertEqual(out.indicesTable.GetAttribute("CardiacQuan.ESFrame"), str(es))
            names = [out.segmentation.GetSegmentation().GetNthSegment(i).GetName()
                     for i in range(out.segmentation.GetSegmentation().GetNumberOfSegments())]
            self.assertEqual(sorted(names), sorted(d[2] for d in TISSUE_SEGMENTS))
            after = vtk_np.vtk_to_numpy(seq.GetNthDataNode(0).GetImageData().GetPointData().GetScalars())
            self.assertTrue(np.array_equal(before, after))
            # re-run from the masks: replaces its own outputs only
            nNodes = slicer.mrmlScene.GetNumberOfNodes()
            logic.requantify(proxy)
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nNodes)
            self.delayDisplay("Test passed")

        def test_failureLeavesSceneUnchanged(self):
            self.delayDisplay("A failing run leaves the scene as it was")
            proxy, seq, browser, labels, ed, es = self._loadPhantom(nFrames=6)
            logic = CardiacQuanLogic()
            ids = sorted(_allNodeIDs(slicer.mrmlScene))
            with self.assertRaises(CardiacQuanRunError):
                logic.quantify(proxy, slices=99)
            logic.engineModule = "CardiacQuanLib_does_not_exist"
            with self.assertRaises(CardiacQuanRunError):
                logic.quantify(proxy, labels=labels)
            self.assertEqual(sorted(_allNodeIDs(slicer.mrmlScene)), ids)
            self.delayDisplay("Test passed")

        def test_networkPath(self):
            self.delayDisplay("Quantify with the network")
            logic = CardiacQuanLogic()
            missing = logic.missingRequirements(network=True)
            if missing:
                self.delayDisplay("Skipped (install the engine requirements first): " + ", ".join(m["name"] for m in missing))
                return
            proxy, seq, browser, labels, ed, es = self._loadPhantom()
            out = logic.quantify(proxy, slices="mid")
            self.assertIsNotNone(out.indicesTable)
            self.assertGreater(out.indicesTable.GetNumberOfRows(), 0)
            self.delayDisplay("Test passed")


def _allNodeIDs(scene):
    return [n.GetID() for n in _allNodes(scene)]
