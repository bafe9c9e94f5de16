"""Slicer's real Python layer over slicer-core, with only the compiled GUI stood in.

The ``slicer-core`` wheel has Slicer's MRML classes, module logics and ``slicer.util``, but not the
pure-Python layer a scripted module stands on (``slicer.ScriptedLoadableModule``,
``slicer.parameterNodeWrapper``, ``slicer.packaging``, ``slicer.i18n``) and no Qt.  ``install()``
adds Slicer's own copy of that layer (``../shared/slicer-python/slicer``, release v5.12.3,
unmodified) to ``slicer.__path__`` and gives the compiled GUI the smallest stand-ins that let it
import and run its non-GUI paths:

- ``qt`` and ``ctk``: modules whose classes accept any call; the widget classes the parameter node
  wrapper binds (``QComboBox``, ``QCheckBox``, ``QPushButton``, ``QLabel``, ``QProgressBar``,
  ``qMRMLNodeComboBox``) record what they are set to and emit their signals, so the wrapper's
  own GUI connectors run on them;
- ``slicer.app`` (``Application``): the application object (module manager, processEvents,
  settings, testing mode, the main thread);
- ``slicer.util``'s dialogs and UI loader (``GuiUtil``): they record what they were asked.

Nothing of the framework itself is stood in: a stand-in of a framework only proves that the module
agrees with the stand-in.  Where ``../shared/slicer-python`` is absent (a user's clone),
``shared_slicer_python()`` says so and the tests that need it skip with that reason.

Nothing here imports TensorFlow.
"""
import inspect
import os
import sys
import threading
import types
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Slicer's pure-Python layer (see ../shared/slicer-python/README.md); CARDIACQUAN_SLICER_PYTHON overrides
SHARED_SLICER_PYTHON = os.environ.get("CARDIACQUAN_SLICER_PYTHON") or os.path.normpath(
    os.path.join(REPO, "..", "shared", "slicer-python", "slicer"))
FRAMEWORK_FILES = ("ScriptedLoadableModule.py", "parameterNodeWrapper", "packaging.py", "i18n.py")


def shared_slicer_python():
    """(path, "") when Slicer's Python layer is there, else (None, why not)."""
    missing = [f for f in FRAMEWORK_FILES if not os.path.exists(os.path.join(SHARED_SLICER_PYTHON, f))]
    if missing:
        return None, (f"Slicer's Python layer is not at {SHARED_SLICER_PYTHON} (../shared/slicer-python is not "
                      f"in a user's clone; set CARDIACQUAN_SLICER_PYTHON to a Slicer source tree's "
                      f"Base/Python/slicer): missing {', '.join(missing)}")
    return SHARED_SLICER_PYTHON, ""


# --------------------------------------------------------------------------------------
# qt / ctk: classes that accept anything, and the few widgets the module's GUI binds
# --------------------------------------------------------------------------------------
class _AnyMeta(type):
    def __getattr__(cls, name):          # qt.Qt.WaitCursor, qt.QSizePolicy.Preferred, ...
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything()


class Anything(metaclass=_AnyMeta):
    """Any Qt object the GUI code creates but the tests do not look at: every call and attribute works."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything()

    def __call__(self, *args, **kwargs):
        return Anything()

    def __or__(self, other):
        return self

    __and__ = __ror__ = __rand__ = __or__

    def __invert__(self):
        return self

    def __bool__(self):
        return True


def _accepted(slot, args):
    """PythonQt calls a slot with as many of the signal's arguments as it takes."""
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return args
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return args
    n = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in params)
    n = max(n, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) if n else 0)
    return args[:n]


class Signal:
    """A Qt signal: connect()/disconnect() slots, emit() calls them (with the arguments each takes)."""

    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def disconnect(self, slot=None):
        if slot is None:
            self.slots.clear()
        elif slot in self.slots:
            self.slots.remove(slot)

    def emit(self, *args):
        for s in list(self.slots):
            s(*_accepted(s, args))


class QWidget(Anything):
    """A widget of the module's .ui: records what the module sets; PythonQt's connect(signature, slot)."""

    SIGNALS = ()

    def __init__(self, *args, name="", properties=None, **kwargs):
        self.__dict__.update(objectName=name, text="", toolTip="", format="", enabled=True, visible=True,
                             value=0, range=(0, 100), _properties=dict(properties or {}), _signals={},
                             history=[])
        for s in self.SIGNALS:
            self._signals[s] = Signal()

    def __setattr__(self, name, value):
        self.__dict__.setdefault("history", []).append((name, value))
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        signals = self.__dict__.get("_signals", {})
        if name in signals:
            return signals[name]
        return super().__getattr__(name)

    def isWidgetType(self):
        return False   # the wrapper then reads the ui namespace, not findChildren()

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value):
        self._properties[name] = value

    def connect(self, signature, slot):   # PythonQt: widget.connect("clicked(bool)", slot)
        self._signals.setdefault(signature.split("(")[0], Signal()).connect(slot)

    def signal(self, name):
        return self._signals.setdefault(name, Signal())

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setRange(self, lo, hi):
        self.range = (lo, hi)

    def setMRMLScene(self, scene):
        self.mrmlScene = scene


class QPushButton(QWidget):
    SIGNALS = ("clicked", "toggled")

    def click(self):
        if self.enabled:
            self.signal("clicked").emit()


class QLabel(QWidget):
    pass


class QProgressBar(QWidget):
    pass


class QCheckBox(QWidget):
    SIGNALS = ("stateChanged", "toggled")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["_checked"] = False

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        changed = bool(value) != self._checked
        self.__dict__["_checked"] = bool(value)
        self.history.append(("checked", bool(value)))
        if changed:
            self.stateChanged.emit(2 if value else 0)


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged", "currentTextChanged")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.update(items=[], _currentIndex=-1)

    def clear(self):
        self.items.clear()
        self.__dict__["_currentIndex"] = -1

    def addItem(self, text, *args):
        self.items.append(text)
        if self._currentIndex < 0:
            self.__dict__["_currentIndex"] = 0

    @property
    def currentIndex(self):
        return self._currentIndex

    @currentIndex.setter
    def currentIndex(self, index):
        changed = index != self._currentIndex
        self.__dict__["_currentIndex"] = index
        self.history.append(("currentIndex", index))
        if changed:
            self.currentIndexChanged.emit(index)

    @property
    def currentText(self):
        return self.items[self._currentIndex] if 0 <= self._currentIndex < len(self.items) else ""


class qMRMLNodeComboBox(QWidget):
    SIGNALS = ("currentNodeChanged", "currentNodeIDChanged")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.update(_node=None, nodeTypes=())

    def currentNode(self):
        return self._node

    def setCurrentNode(self, node):
        changed = node is not self._node
        self.__dict__["_node"] = node
        self.history.append(("currentNode", node))
        if changed:
            self.currentNodeChanged.emit(node)


class QTimer(Anything):
    """qt.QTimer: the test calls the widget's timer slot itself; this records start/stop."""

    def __init__(self, *args):
        self.timeout = Signal()
        self.active = False
        self.interval = 0

    def setInterval(self, ms):
        self.interval = ms

    def start(self, *args):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    @staticmethod
    def singleShot(msec, callback):
        callback()


class QSettings(Anything):
    """No stored settings: every key takes its default."""

    def contains(self, key):
        return False

    def value(self, key, default=None):
        return default


class QThread(Anything):
    MAIN = object()

    @staticmethod
    def currentThread():
        return QThread.MAIN if threading.current_thread() is threading.main_thread() else object()

    @staticmethod
    def msleep(ms):
        pass


#: slicer.q* classes (compiled, in the application only) that Slicer's Python layer refers to
SLICER_WIDGETS = ("qMRMLNodeComboBox", "qMRMLWidget", "qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget",
                  "qMRMLUtils", "qMRMLScreenShotDialog", "qSlicerWidget")

WIDGET_CLASSES = {c.__name__: c for c in (QWidget, QPushButton, QLabel, QProgressBar, QCheckBox, QComboBox,
                                          qMRMLNodeComboBox)}


def _gui_module(name, classes):
    m = types.ModuleType(name)
    m.__file__ = __file__
    m.__dict__.update(classes)
    cache = {}

    def __getattr__(attr):   # every other class name: a class that accepts anything (same one each time)
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr not in cache:
            cache[attr] = type(attr, (Anything,), {})
        return cache[attr]

    m.__getattr__ = __getattr__
    return m


def qt_module():
    return _gui_module("qt", dict(QWidget=QWidget, QPushButton=QPushButton, QLabel=QLabel, QProgressBar=QProgressBar,
                                  QCheckBox=QCheckBox, QComboBox=QComboBox, QTimer=QTimer, QSettings=QSettings,
                                  QThread=QThread))


def ctk_module():
    return _gui_module("ctk", {})


def ui_from_file(path):
    """The .ui file's widgets as the stand-in classes, with their SlicerParameterName: the namespace
    ``slicer.util.childWidgetVariables`` returns in Slicer."""
    widgets = {}
    for w in ET.parse(path).getroot().iter("widget"):
        props = {p.get("name"): p.findtext("string") for p in w.findall("property") if p.findtext("string") is not None}
        cls = WIDGET_CLASSES.get(w.get("class"), QWidget)
        widget = cls(name=w.get("name"), properties={"SlicerParameterName": props.get("SlicerParameterName")})
        widget.__dict__["className"] = w.get("class")
        widgets[w.get("name")] = widget
    return types.SimpleNamespace(**widgets)


# --------------------------------------------------------------------------------------
# slicer.app and slicer.util's GUI parts
# --------------------------------------------------------------------------------------
class ModuleManager(Anything):
    def __init__(self):
        self.connections = []

    def connect(self, signal, slot):
        self.connections.append((signal, slot))

    def disconnect(self, signal, slot):
        self.connections = [c for c in self.connections if c != (signal, slot)]


class Application(Anything):
    """slicer.app: what the module and Slicer's Python layer ask of the application."""

    def __init__(self, appLogic=None, temporaryPath=None, testing=False):
        self._appLogic = appLogic
        self.temporaryPath = temporaryPath
        self.slicerHome = None
        self.testing = testing
        self._moduleManager = ModuleManager()
        self.processEventsCalls = 0
        self.cursorDepth = 0

    def applicationLogic(self):
        return self._appLogic

    def layoutManager(self):
        return None     # no views without the GUI: the module's view updates are skipped

    def moduleManager(self):
        return self._moduleManager

    def processEvents(self, *args):
        self.processEventsCalls += 1

    def testingEnabled(self):
        return self.testing

    def thread(self):
        return QThread.MAIN

    def translate(self, context, text):
        return text

    def setOverrideCursor(self, *args):
        self.cursorDepth += 1

    def restoreOverrideCursor(self):
        self.cursorDepth -= 1

    def userSettings(self):
        return QSettings()

    settings = userSettings


class GuiUtil:
    """slicer.util's dialogs and UI loader: record what they were asked; confirm answers `confirm`."""

    NAMES = ("loadUI", "childWidgetVariables", "confirmOkCancelDisplay", "confirmYesNoDisplay", "infoDisplay",
             "warningDisplay", "errorDisplay", "delayDisplay", "mainWindow", "showStatusMessage")

    def __init__(self, uiFile):
        self.uiFile = uiFile
        self.ui = None
        self.confirm = True
        self.asked = []      # (kind, text) of every dialog
        self.delayed = []    # delayDisplay messages (the self-test's report)
        self.status = []

    def loadUI(self, path):
        self.ui = ui_from_file(path)
        return qMRMLNodeComboBox(name="moduleWidget")   # anything with setMRMLScene

    def childWidgetVariables(self, widget):
        return self.ui

    def confirmOkCancelDisplay(self, text, windowTitle=None, **kwargs):
        self.asked.append(("confirm", text))
        return self.confirm

    confirmYesNoDisplay = confirmOkCancelDisplay

    def infoDisplay(self, text, *args, **kwargs):
        self.asked.append(("info", text))

    def warningDisplay(self, text, *args, **kwargs):
        self.asked.append(("warning", text))

    def errorDisplay(self, text, *args, **kwargs):
        self.asked.append(("error", text))

    def delayDisplay(self, message, *args, **kwargs):
        self.delayed.append(message)

    def mainWindow(self, *args):
        return None

    def showStatusMessage(self, message, *args):
        self.status.append(message)


# --------------------------------------------------------------------------------------
def install():
    """Make Slicer's real Python layer importable over slicer-core, with qt and ctk stood in.

    Returns (True, "") or (False, why not). Idempotent. slicer.app is not set here: a test sets
    it (``Application``) when it plays the application; without it the module runs as in a
    batch script (the Logic only).
    """
    path, reason = shared_slicer_python()
    if path is None:
        return False, reason
    try:
        import slicer
    except Exception as e:  # noqa: BLE001  (a missing or broken binary wheel)
        return False, f"slicer-core is not importable ({type(e).__name__}: {e}); pip install slicer-core"
    for name, make in (("qt", qt_module), ("ctk", ctk_module)):
        if name not in sys.modules:
            sys.modules[name] = make()
    if path not in slicer.__path__:
        slicer.__path__.append(path)
    for name in SLICER_WIDGETS:   # the compiled slicer.q* widgets the wrapper's GUI connectors name
        if not hasattr(slicer, name):
            setattr(slicer, name, qMRMLNodeComboBox if name == "qMRMLNodeComboBox" else type(name, (Anything,), {}))
    import slicer.i18n  # noqa: F401
    import slicer.packaging  # noqa: F401
    import slicer.parameterNodeWrapper  # noqa: F401
    import slicer.ScriptedLoadableModule  # noqa: F401

    for name in ("ScriptedLoadableModule", "parameterNodeWrapper", "packaging", "i18n"):
        module = sys.modules[f"slicer.{name}"]
        assert os.path.dirname(os.path.abspath(module.__file__)).startswith(path), module.__file__
    return True, ""
