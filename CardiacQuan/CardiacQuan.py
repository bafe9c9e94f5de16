"""CardiacQuan: full left-ventricle quantification from short-axis cine MRI, as a 3D Slicer module.

This file follows Slicer's scripted-module template:
- ``CardiacQuan``: module metadata (title, category, help, acknowledgement).
- ``CardiacQuanParameterNode``: the GUI state, saved with the scene.
- ``CardiacQuanWidget``: the GUI only; it reads the parameter node and calls the Logic.
- ``CardiacQuanLogic``: the public API, also for Slicer's Python console and batch scripts; a thin
  facade over the Slicer-side helpers in ``CardiacQuanLib/`` (reading the cine from the scene,
  running the engine process, importing its results).
- ``CardiacQuanTest``: a self-test that runs inside Slicer on a generated phantom cine.

The engine (the package ``cardiacquan`` next to this file) runs in a separate process --
``python -m cardiacquan quantify`` with Slicer's own Python (``PythonSlicer``) inside Slicer,
``sys.executable`` elsewhere -- and the two sides exchange files through a temporary folder.  This
side imports nothing from the engine but ``cardiacquan.contract`` (numpy only), so the module loads
before the engine's Python requirements are installed.
"""
import logging
import math
import os
import sys
from typing import Annotated

import numpy as np
import qt
import vtk
import vtk.util.numpy_support as vtk_np

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

#: the folder holding this file, CardiacQuanLib/ and the engine package cardiacquan/
MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
if MODULE_DIR not in sys.path:  # Slicer puts it there; a script loading this file by path may not
    sys.path.insert(0, MODULE_DIR)

from cardiacquan.contract import LV_CAVITY, MYOCARDIUM, RV, ExchangeError, checked_labels  # noqa: E402

from CardiacQuanLib import cine_sync, output_registry, results_import, scene_input, startup  # noqa: E402
from CardiacQuanLib.application import (  # noqa: E402
    applicationLogic,
    inSlicerApplication,
    moduleLogic,
    showBrowserInToolbar,
    whenStartupCompleted,
)
from CardiacQuanLib.engine_process import ENGINE_MODULE, QuantifyJob, startEngine  # noqa: E402
from CardiacQuanLib.errors import CardiacQuanRunError, oneLine  # noqa: E402
from CardiacQuanLib.indices_table import ATTRIBUTE_ED_FRAME, ATTRIBUTE_ES_FRAME, resultsSummary  # noqa: E402
from CardiacQuanLib.mrml_arrays import floatImageData  # noqa: E402
from CardiacQuanLib.output_registry import CardiacQuanOutputs, allNodes  # noqa: E402
from CardiacQuanLib.regional_import import ENGINE_ARGUMENTS  # noqa: E402
from CardiacQuanLib.requirements import installRequirements, missingRequirements  # noqa: E402
from CardiacQuanLib.scene_input import CineInput  # noqa: E402
from CardiacQuanLib.segment_definitions import SECTOR_SEGMENTS, TISSUE_SEGMENTS  # noqa: E402,F401  (public)

#: the GUI's names of the --slices values "all", a slice index (the Red view's), "mid"
SLICE_CHOICES = ("all slices", "current slice", "mid-ventricular slice")


# ======================================================================================
# Module
# ======================================================================================
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
        # the extension's terminology and its sample cine (Sample Data module, category Cardiac)
        whenStartupCompleted(lambda: startup.onStartupCompleted(moduleLogic(applicationLogic(), "Terminologies")))


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
(ED to ES) highlighted, ED and ES marked, and the frame the cine shows (it follows the cine while
you play or scrub it; so does the table's selected row). <b>Go to ED</b> / <b>Go to ES</b> set the cine there.</li>
<li><b>AHA segments</b> table (a stack of slices): wall thickness at ED and ES and systolic thickening
in the 16 AHA segments, and the <b>bull's-eye</b> picture of them.</li>
</ul>
<p><b>Show results</b> opens a layout with the cine beside the chart, the tables and the bull's-eye.
Sample data: <i>Sample Data</i> module, category Cardiac, "CardiacQuan short-axis cine" (Sunnybrook
Cardiac Data, public domain).</p>
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

    inputCine - the cine: a volume sequence, its proxy volume, or a 4-D volume; None until chosen.
    slices - which slices to quantify.
    keepTemporaryFiles - keep the engine's exchange folder (for debugging).
    lastIndicesTable - indices table of the last run (restores the results summary); None before one.

    Node fields a selector can clear are ``X | None``: Slicer's wrapper writes each field's default
    (None) when it wraps the node, and a Union without None cannot hold it.
    """

    inputCine: vtkMRMLScalarVolumeNode | vtkMRMLSequenceNode | None
    slices: Annotated[str, Choice(list(SLICE_CHOICES))] = SLICE_CHOICES[0]
    keepTemporaryFiles: bool = False
    lastIndicesTable: vtkMRMLTableNode | None


# ======================================================================================
# Widget (GUI only)
# ======================================================================================
class CardiacQuanWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI: select input, start/cancel, show progress and a summary. The Logic does the work."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._reportedJob = None
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
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)

        self.ui.quantifyButton.connect("clicked(bool)", self.onQuantifyButton)
        self.ui.requantifyButton.connect("clicked(bool)", self.onRequantifyButton)
        self.ui.showResultsButton.connect("clicked(bool)", self.onShowResultsButton)
        self.ui.goToEDButton.connect("clicked(bool)", lambda: self.onGoToFrame("ED"))
        self.ui.goToESButton.connect("clicked(bool)", lambda: self.onGoToFrame("ES"))
        self.ui.installRequirementsButton.connect("clicked(bool)", self.onInstallRequirementsButton)
        self.ui.progressBar.hide()

        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self.onTimer)

        self.initializeParameterNode()

    def cleanup(self):
        if self._job is not None and not self._job.done:
            self._job.cancel(wait=False, force=True)   # the module is going away: kill, never wait
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event):
        if self._running():
            self._job.cancel(wait=False)   # the timer sees it end; nothing is imported into the new scene
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event):
        # An opened scene's parameter node is merged into ours while its nodes are still arriving:
        # wrap it afresh so the wrapper's cached values (lastIndicesTable, ...) are the loaded ones.
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
        self.ui.goToEDButton.enabled = self.ui.goToESButton.enabled = table is not None and not running
        if table is not None:
            self.logic.followResults(outputs)   # chart marker and table row follow the cine

    # -- actions -----------------------------------------------------------------
    def onQuantifyButton(self):
        if self._running():
            self._job.cancel(wait=False)   # never waits in the GUI thread: the timer sees the job end
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
            self.ui.statusLabel.text = "Failed: " + oneLine(e)
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
        if job is None or job is self._reportedJob:   # an end is reported once, whatever ticks follow
            self._timer.stop()
            return
        try:
            job.poll()
        except Exception as e:  # never leave the GUI in the running state, and say it once
            logging.exception("CardiacQuan: unexpected error")
            job.fail(oneLine(e))
        if not job.done:
            return
        self._reportedJob = job
        self._timer.stop()
        self.ui.progressBar.hide()
        if job.state == "succeeded":
            out = job.outputs
            if self._parameterNode:
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

    def onGoToFrame(self, which):
        inputNode = self._parameterNode.inputCine
        if inputNode:
            self.logic.goToFrame(inputNode, which)

    def onInstallRequirementsButton(self):
        self._ensureRequirements(network=True, askFirst=False, reportSatisfied=True)

    def _ensureRequirements(self, network, askFirst=True, reportSatisfied=False):
        """True when the engine's packages are there; else asks, then installs them (never at import)."""
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
        self.ui.statusLabel.text = "Installing Python packages: " + ", ".join(m["name"] for m in missing) + "..."
        try:
            installed = self.logic.installRequirements(missing, network=network, askFirst=askFirst)
        except Exception as e:
            logging.exception("CardiacQuan: installing Python packages failed")
            self.ui.statusLabel.text = "Installing Python packages failed: " + oneLine(e)
            return False
        if not installed:
            self.ui.statusLabel.text = "Python packages missing: " + ", ".join(m["name"] for m in missing)
            return False
        still = self.logic.missingRequirements(network=network)
        if still:
            self.ui.statusLabel.text = "Still missing: " + ", ".join(m["name"] for m in still)
            return False
        self.ui.statusLabel.text = "Python packages installed."
        return True


# ======================================================================================
# Logic (the public API; the work is done by CardiacQuanLib and the engine process)
# ======================================================================================
class CardiacQuanLogic(ScriptedLoadableModuleLogic):
    """Quantify a cine and put the results in the scene; no GUI.

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
        self.engineModule = ENGINE_MODULE
        self.enginePythonPaths = [MODULE_DIR]  # the folder holding cardiacquan/
        self.engineExtraArguments = []
        self.temporaryDirectory = None         # None: Slicer's temporary folder, or the system one
        self._followers = {}                   # browser ID -> cine_sync.ResultsFollower

    # -- scene access ------------------------------------------------------------------
    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    @property
    def appLogic(self):
        return self._appLogic if self._appLogic is not None else applicationLogic()

    def moduleLogic(self, name):
        """A module's logic by its Slicer module name ("Sequences", "Plots", ...)."""
        return moduleLogic(self.appLogic, name)

    def getParameterNode(self):
        return CardiacQuanParameterNode(super().getParameterNode())

    # -- requirements ------------------------------------------------------------------
    @staticmethod
    def missingRequirements(network=True):
        """Engine packages absent or too old in this Python: list of dicts (name, pipSpec, text)."""
        return missingRequirements(network=network)

    @staticmethod
    def installRequirements(missing=None, network=True, askFirst=True):
        """Install the missing engine packages into Slicer's Python (inside Slicer only), never
        upgrading what it has; asks first unless askFirst is False. False: the user declined."""
        return installRequirements(missing, network=network, askFirst=askFirst)

    # -- inputs ------------------------------------------------------------------------
    def firstCineInScene(self):
        """A likely input: the proxy volume of the first browser that plays a volume sequence."""
        return scene_input.firstCineInScene(self.scene)

    def readCine(self, inputNode) -> CineInput:
        """Pixels, geometry and frame index values of a cine node (the node itself is not modified)."""
        return scene_input.readCine(self.scene, self.moduleLogic("Sequences"), inputNode)

    def currentSliceIndex(self, inputNode, sliceNode=None):
        """Index (0-based) of the input's slice at the centre of a slice view (Red by default)."""
        return scene_input.currentSliceIndex(self.scene, self.readCine(inputNode), sliceNode)

    def labelsFromSegmentation(self, cine, segmentationNode=None):
        """(T, Z, R, C) uint8 label array from a per-frame segmentation (edits of the proxy included).

        segmentationNode: this module's segmentation (default), its sequence, or another segmentation
        sequence with one item per frame (segments named "LV myocardium", "LV cavity", "RV cavity").
        """
        sequencesLogic = self.moduleLogic("Sequences")
        if segmentationNode is None:
            sequence = self.findOutputs(cine.ownerNode).segmentationSequence
            if sequence is None:
                raise CardiacQuanRunError(f"'{cine.name}' has no CardiacQuan segmentation yet: run Quantify LV first")
        else:
            sequence = scene_input.segmentationSequenceOf(segmentationNode, sequencesLogic)
        return scene_input.labelsFromSequence(cine, sequence, sequencesLogic)

    # -- running -----------------------------------------------------------------------
    def quantify(self, inputNode, slices="all", labels=None, keepTemporaryFiles=False, showResults=True,
                 progressCallback=None, logCallback=None, timeout=None) -> CardiacQuanOutputs:
        """Quantify a cine and create/replace the outputs; blocks until done. Returns CardiacQuanOutputs.

        slices: "all", "mid" (mid-ventricular slice chosen by the engine) or a slice index.
        labels: optional (T, Z, R, C) label array (0 bg, 1 RV, 2 LV myocardium, 3 LV cavity);
                given, the network is not run and the indices are measured on these masks.
        Raises CardiacQuanRunError (one-line message) when the run fails; the scene is then unchanged.
        """
        job = self.startQuantify(inputNode, slices=slices, labels=labels, keepTemporaryFiles=keepTemporaryFiles,
                                 showResults=showResults, progressCallback=progressCallback, logCallback=logCallback)
        return job.wait(timeout).result()

    def requantify(self, inputNode, segmentationNode=None, slices="all", keepTemporaryFiles=False, showResults=True,
                   progressCallback=None, logCallback=None, timeout=None) -> CardiacQuanOutputs:
        """Recompute the indices from the (edited) segmentation without running the network.

        segmentationNode: see labelsFromSegmentation.
        """
        job = self.startRequantify(inputNode, segmentationNode=segmentationNode, slices=slices,
                                   keepTemporaryFiles=keepTemporaryFiles, showResults=showResults,
                                   progressCallback=progressCallback, logCallback=logCallback)
        return job.wait(timeout).result()

    def startQuantify(self, inputNode, slices="all", labels=None, **kwargs) -> QuantifyJob:
        """Start a quantification in the engine process; returns a QuantifyJob (poll() or wait() it)."""
        cine = self.readCine(inputNode)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != cine.image.shape:
                raise CardiacQuanRunError(f"labels have shape {labels.shape}, the cine {cine.image.shape}")
            try:
                labels = checked_labels(labels)
            except ExchangeError as e:
                raise CardiacQuanRunError(str(e)) from None
        return self._start(cine, slices=slices, labels=labels, **kwargs)

    def startRequantify(self, inputNode, segmentationNode=None, **kwargs) -> QuantifyJob:
        """Start a re-quantification (see requantify); returns a QuantifyJob."""
        cine = self.readCine(inputNode)
        labels = self.labelsFromSegmentation(cine, segmentationNode)
        return self._start(cine, labels=labels, **kwargs)

    def _start(self, cine, slices="all", labels=None, keepTemporaryFiles=False, showResults=True,
               progressCallback=None, logCallback=None, finishedCallback=None):
        slicesArg = self._slicesArgument(slices, cine)
        if inSlicerApplication() and not self.pythonExecutable:  # the engine runs in this same Python installation
            missing = self.missingRequirements(network=labels is None)
            if missing:
                raise CardiacQuanRunError(
                    "missing Python packages: " + ", ".join(m["text"] for m in missing) +
                    " (install them with the module's 'Check / install Python packages' button or "
                    "logic.installRequirements())")
        workDir, process = startEngine(cine, slicesArg, labels, python=self.pythonExecutable,
                                       engineModule=self.engineModule, pythonPaths=self.enginePythonPaths,
                                       extraArguments=[*ENGINE_ARGUMENTS, *self.engineExtraArguments],
                                       temporaryDirectory=self.temporaryDirectory)
        return QuantifyJob(cine, slicesArg, workDir, process, labels is not None, keepTemporaryFiles,
                           importResults=self._importResults, progressCallback=progressCallback,
                           logCallback=logCallback, finishedCallback=finishedCallback, showResults=showResults)

    @staticmethod
    def _slicesArgument(slices, cine):
        """The engine's --slices value for `slices` ("all", "mid", a slice index or a SLICE_CHOICES name)."""
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

    def _importResults(self, job):
        """The outputs of a finished engine run (all or nothing), then shown."""
        startup.ensureTerminologyLoaded(self.moduleLogic("Terminologies"))
        out = results_import.importResults(self.scene, self.moduleLogic("Sequences"), job.cine, job.outputDirectory,
                                           labelsGiven=job.labelsGiven)
        try:
            self.followResults(out)
        except Exception:  # following the cine is a convenience, never a failure
            logging.debug("CardiacQuan: the results do not follow the cine", exc_info=True)
        if job.showResults:
            try:
                self.showResults(out)
            except Exception:  # showing is a convenience, never a failure
                logging.debug("CardiacQuan: could not show the results", exc_info=True)
        return out

    # -- outputs -----------------------------------------------------------------------
    def findOutputs(self, node) -> CardiacQuanOutputs:
        """The outputs of the last run on a cine (given as the cine or any of its nodes)."""
        return output_registry.findOutputs(self.scene, self.moduleLogic("Sequences"), node)

    def showResults(self, outputs):
        """The results layout (cine | chart over the indices table, AHA segments table, bull's-eye) with
        this run's nodes in its views, and the cine's browser in the Sequences toolbar."""
        if outputs is None or outputs.get("chart") is None:
            return
        cine_sync.showResultsLayout(self.scene, self.appLogic, outputs)
        if outputs.segmentation is not None:
            showBrowserInToolbar(outputs.browser)

    def followResults(self, outputs):
        """Keep the chart's current-frame marker and the table's current row on the frame the cine's
        browser shows (after a run, and for results loaded with a scene). Returns the follower."""
        if outputs is None or outputs.get("browser") is None or outputs.get("indicesTable") is None:
            return None
        browser = outputs.browser
        follower = self._followers.get(browser.GetID())
        if follower is not None and follower.alive() and follower.indicesTable is outputs.indicesTable \
                and follower.curvesTable is outputs.curvesTable:
            return follower
        if follower is not None:
            follower.stop()
        follower = cine_sync.ResultsFollower(browser, cine_sync.cineSequenceOf(outputs), outputs.curvesTable,
                                             outputs.indicesTable)
        self._followers[browser.GetID()] = follower
        return follower

    def goToFrame(self, node, which):
        """Show the study's end-diastole (which="ED") or end-systole ("ES") in the cine's browser; the
        segmentations, chart marker and table row follow. Returns the browser's item number (-1: none)."""
        outputs = self.findOutputs(node)
        if outputs.indicesTable is None or outputs.browser is None:
            raise CardiacQuanRunError(f"'{node.GetName()}' has no CardiacQuan results yet")
        self.followResults(outputs)
        return cine_sync.goToFrame(outputs.browser, cine_sync.cineSequenceOf(outputs), outputs.indicesTable, which)

    def resultsSummary(self, indicesTable) -> str:
        """A few lines for the GUI: ED/ES frames and the mid slice's indices at ED and ES."""
        return resultsSummary(indicesTable)


# ======================================================================================
# Self-test inside Slicer
# ======================================================================================
class CardiacQuanTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Developer mode: Reload and Test) on a generated phantom cine.

    The geometry path (the engine measuring given masks) always runs: it needs what Slicer ships
    (numpy, scipy, SimpleITK, pydicom) and fails, not skips, when that is missing.  The network path
    runs when ONNX Runtime is installed; the last message says whether it ran, or why not.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.report = {}
        self.setUp()
        self.test_quantifyGivenMasks()
        self.setUp()
        self.test_failureLeavesSceneUnchanged()
        self.setUp()
        self.test_networkPath()
        self.delayDisplay("CardiacQuan self-test: " + "; ".join(f"{k}: {v}" for k, v in self.report.items()))

    def _record(self, path, outcome):
        if not hasattr(self, "report"):
            self.report = {}
        self.report[path] = outcome
        logging.info("CardiacQuan self-test, %s: %s", path, outcome)

    def _loadPhantom(self, nFrames=12):
        image, labels, ed, es = makePhantomCine(nFrames=nFrames)
        T = image.shape[0]
        seq = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "PhantomCine")
        seq.SetIndexName("time")
        seq.SetIndexUnit("ms")
        for t in range(T):
            v = slicer.vtkMRMLScalarVolumeNode()
            v.SetAndObserveImageData(floatImageData(image[t]))
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
        self.assertEqual(missing, [], "the geometry path needs only what Slicer ships; missing: " +
                         ", ".join(m["text"] for m in missing))
        before = vtk_np.vtk_to_numpy(seq.GetNthDataNode(0).GetImageData().GetPointData().GetScalars()).copy()
        out = logic.quantify(proxy, slices="all", labels=labels)
        self.assertIsNotNone(out.segmentation)
        self.assertEqual(out.segmentationSequence.GetNumberOfDataNodes(), seq.GetNumberOfDataNodes())
        self.assertEqual(out.indicesTable.GetAttribute(ATTRIBUTE_ED_FRAME), str(ed))
        self.assertEqual(out.indicesTable.GetAttribute(ATTRIBUTE_ES_FRAME), str(es))
        names = [out.segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(out.segmentation.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(sorted(names), sorted(d[2] for d in TISSUE_SEGMENTS))
        after = vtk_np.vtk_to_numpy(seq.GetNthDataNode(0).GetImageData().GetPointData().GetScalars())
        self.assertTrue(np.array_equal(before, after))
        # re-run from the masks: replaces its own outputs only
        nNodes = slicer.mrmlScene.GetNumberOfNodes()
        logic.requantify(proxy)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nNodes)
        self._record("geometry path (given masks)", "ran and passed")
        self.delayDisplay("Test passed")

    def test_failureLeavesSceneUnchanged(self):
        self.delayDisplay("A failing run leaves the scene as it was")
        proxy, seq, browser, labels, ed, es = self._loadPhantom(nFrames=6)
        logic = CardiacQuanLogic()
        ids = sorted(allNodeIDs(slicer.mrmlScene))
        with self.assertRaises(CardiacQuanRunError):
            logic.quantify(proxy, slices=99)
        logic.engineModule = "cardiacquan_does_not_exist"
        with self.assertRaises(CardiacQuanRunError):
            logic.quantify(proxy, labels=labels)
        self.assertEqual(sorted(allNodeIDs(slicer.mrmlScene)), ids)
        self._record("failure paths", "ran and passed")
        self.delayDisplay("Test passed")

    def test_networkPath(self):
        self.delayDisplay("Quantify with the network")
        logic = CardiacQuanLogic()
        missing = logic.missingRequirements(network=True)
        if missing:
            self._record("network path", "NOT RUN: missing " + ", ".join(m["text"] for m in missing) +
                         " (install with the module's 'Check / install Python packages' button)")
            self.delayDisplay("Network path not run: missing " + ", ".join(m["name"] for m in missing))
            return
        proxy, seq, browser, labels, ed, es = self._loadPhantom()
        out = logic.quantify(proxy, slices="mid")
        self.assertIsNotNone(out.indicesTable)
        self.assertGreater(out.indicesTable.GetNumberOfRows(), 0)
        self.assertEqual(out.segmentationSequence.GetNumberOfDataNodes(), seq.GetNumberOfDataNodes())
        self._record("network path", "ran and passed")
        self.delayDisplay("Test passed")


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
            lab[rv & (d > rEpi)] = RV
            lab[(d <= rEpi) & (d > rEndo)] = MYOCARDIUM
            lab[d <= rEndo] = LV_CAVITY
            labels[t, z] = lab
            img = np.choose(lab, [60.0, 220.0, 90.0, 240.0]).astype(np.float32)
            image[t, z] = img + rng.normal(0, 8, (N, N)).astype(np.float32)
    return image, labels, 0, es


def allNodeIDs(scene):
    return [n.GetID() for n in allNodes(scene)]
